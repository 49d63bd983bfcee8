"""Training an avatar's lip-sync networks from a dataset made by ``lipstream build``.

The generator (``lipstream.model.network.Generator``) and the AVE audio encoder are trained
together from scratch: for frame k, the encoder turns the mel windows of k's 16 feature rows
into a [32, 16, 16] block, and the generator turns [the crop of a random other training frame,
frame k's crop with the mouth masked] plus that block into frame k's 320x320 region. The
reference comes from another frame so the mouth cannot be copied: it has to come from the audio.

Loss: L1 plus L1 of image gradients at two scales (edges: lips and teeth), both weighted
``1 + mouth_weight`` in the mouth region (the lower half of the mask) and 1 elsewhere.

The last ``held_out_fraction`` of the frames is never trained on (neither as target nor as
reference); the final evaluation runs on it. Checkpoints go to ``<run_dir>/checkpoints``; the
result is a model package written with ``PackageWriter``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.avatar.checkpoints import (
    CHECKPOINTS_DIR,
    checkpoints,
    prune_checkpoints,
    read_checkpoint,
    save_checkpoint,
)
from lipstream.avatar.evaluate import (
    MOUTH_COLS,
    MOUTH_ROWS,
    OpeningMeasure,
    audio_features,
    default_opening_measure,
    evaluate,
    network_input,
)
from lipstream.avatar.packaging import write_package
from lipstream.avatar.training_data import TrainingData, load_training_data
from lipstream.errors import CheckpointError, InvalidInput, PackageError
from lipstream.geometry import NETWORK_SIZE, inner
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.checkpoint import load_strict
from lipstream.model.network import Generator, GeneratorConfig
from lipstream.model.package import ModelPackage, check_name


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults fit a quarter-width generator trained on a CPU."""

    width: float = 0.25
    """Generator width multiplier: 0.25 runs in real time on two CPU cores, 0.5 and 1 on GPUs."""
    steps: int = 2000
    """Total optimisation steps (a resumed run continues up to this count)."""
    batch_size: int = 8
    lr: float = 1e-3
    """Adam learning rate, for both networks."""
    lr_decay_fraction: float = 0.1
    """The last share of the steps trains at ``lr`` / 10 (0: one rate throughout). The
    low-latency demo's lip sync rose from 0.70 to 0.79 in such a phase (docs/latency.md)."""
    seed: int = 0
    held_out_fraction: float = 0.1
    """Share of frames at the end of the video kept out of training for evaluation."""
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    """Older checkpoints are deleted beyond this many (each holds the optimiser state too)."""
    mouth_weight: float = 4.0
    """Extra loss weight of the mouth region (lower half of the mask): 1 + this there."""
    gradient_weight: float = 1.0
    """Weight of the image-gradient L1 term relative to plain L1."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    threads: int = 0
    """CPU threads for PyTorch; 0 uses every core (fewer helps on a machine shared with others)."""
    layout: FeatureLayout = SYNCTALK2D
    """Which feature rows a frame reads: SyncTalk_2D's (452.5 ms lookahead) or a shorter one."""

    def __post_init__(self) -> None:
        GeneratorConfig(self.width)  # validates the width
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (
                0.0 <= self.lr_decay_fraction < 1.0,
                f"lr_decay_fraction must be in [0, 1), got {self.lr_decay_fraction}",
            ),
            (
                0.0 <= self.held_out_fraction < 1.0,
                f"held_out_fraction must be in [0, 1), got {self.held_out_fraction}",
            ),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (self.threads >= 0, f"threads must be >= 0, got {self.threads}"),
            (self.mouth_weight >= 0 and self.gradient_weight >= 0, "loss weights must be >= 0"),
            (
                self.device in ("auto", "cpu", "cuda"),
                f"device must be auto, cpu or cuda, got {self.device!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(message)


# --------------------------------------------------------------------------------------------
# Sampling, loss


class FrameSampler:
    """Picks each step's (target, reference) frames from the training frames only.

    A step's batch depends on (seed, step) alone, so a resumed run draws the batches the
    uninterrupted run would have. ``drawn`` records every frame index ever handed out.
    """

    def __init__(self, frames: Sequence[int], batch_size: int, seed: int):
        self.frames = np.asarray(frames, dtype=np.int64)
        if len(self.frames) < 2:
            raise InvalidInput("training needs at least 2 frames (the reference is another one)")
        self.batch_size = batch_size
        self.seed = seed
        self.drawn: set[int] = set()

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(target frames, reference frames) of ``step``, each int64 [batch_size]."""
        rng = np.random.default_rng([self.seed, step])
        n = len(self.frames)
        pos = rng.choice(n, self.batch_size, replace=n < self.batch_size)
        # a different frame for each reference: draw from n-1 and skip the target's own slot
        other = rng.integers(0, n - 1, self.batch_size)
        other = other + (other >= pos)
        targets, references = self.frames[pos], self.frames[other]
        self.drawn.update(targets.tolist())
        self.drawn.update(references.tolist())
        return targets, references


def loss_weights(mouth_weight: float) -> torch.Tensor:
    """Per-pixel loss weight [1, 1, 320, 320]: 1, and 1 + mouth_weight in the mouth region."""
    w = torch.ones(1, 1, NETWORK_SIZE, NETWORK_SIZE)
    w[..., MOUTH_ROWS, MOUTH_COLS] += mouth_weight
    return w


def _weighted_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return ((a - b).abs() * weight).mean() / weight.mean()


def reconstruction_loss(
    predicted: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, gradient_weight: float
) -> torch.Tensor:
    """Weighted L1 plus weighted L1 of horizontal and vertical differences at scales 1 and 2.

    Plain L1 alone settles for a blurred mouth; the gradient term rewards sharp lip edges and
    needs no pretrained network (unlike a perceptual loss).
    """
    loss = _weighted_l1(predicted, target, weight)
    if gradient_weight == 0:
        return loss
    p, t, w = predicted, target, weight
    edges = predicted.new_zeros(())
    for scale in (1, 2):
        if scale > 1:
            p, t, w = (F.avg_pool2d(v, 2) for v in (p, t, w))
        edges = edges + _weighted_l1(
            p[..., :, 1:] - p[..., :, :-1], t[..., :, 1:] - t[..., :, :-1], w[..., :, 1:]
        )
        edges = edges + _weighted_l1(
            p[..., 1:, :] - p[..., :-1, :], t[..., 1:, :] - t[..., :-1, :], w[..., 1:, :]
        )
    return loss + gradient_weight * edges


# --------------------------------------------------------------------------------------------
# The trainer


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is refused."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("device cuda was asked for but PyTorch sees no CUDA GPU")
    return torch.device(name)


class Trainer:
    """The two networks, their optimiser and the data, one ``step`` at a time."""

    def __init__(self, data: TrainingData, config: TrainConfig):
        self.data = data
        self.config = config
        self.device = resolve_device(config.device)
        self.train_frames, self.held_out_frames = data.split(config.held_out_fraction)
        self.sampler = FrameSampler(self.train_frames, config.batch_size, config.seed)
        torch.manual_seed(config.seed)
        # channels_last: the 1x1 convolutions that dominate the generator run faster in NHWC
        self.generator = Generator(GeneratorConfig(config.width)).to(self.device)
        self.generator.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.encoder = AudioEncoder().to(self.device)
        self.optimizer = torch.optim.Adam(
            [*self.generator.parameters(), *self.encoder.parameters()], lr=config.lr
        )
        self.regions = inner(data.crops)  # views: no second copy of the frames
        self.mel = torch.from_numpy(data.mel_windows).to(self.device)
        self.weight = loss_weights(config.mouth_weight).to(self.device)
        self.step = 0  # steps done
        self.elapsed_s = 0.0  # training time over all runs, resumed ones included
        self.last_loss = float("nan")  # smoothed loss at the last checkpoint

    def loss(
        self, targets: Sequence[int] | np.ndarray, references: Sequence[int] | np.ndarray
    ) -> torch.Tensor:
        """The training loss of one batch (networks in whatever mode they are in)."""
        target = self.regions[np.asarray(targets)]
        image = network_input(self.regions[np.asarray(references)], target, self.device)
        audio = audio_features(self.encoder, self.mel, list(targets), self.config.layout)
        predicted = self.generator(image, audio.contiguous(memory_format=torch.channels_last))
        truth = torch.from_numpy(np.ascontiguousarray(target)).to(self.device)
        truth = truth.permute(0, 3, 1, 2).float().div_(255.0)
        return reconstruction_loss(predicted, truth, self.weight, self.config.gradient_weight)

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step``: ``lr``, a tenth of it in the final phase."""
        config = self.config
        decay_from = config.steps - round(config.steps * config.lr_decay_fraction)
        return config.lr / 10 if step >= decay_from else config.lr

    def train_step(self) -> float:
        """One optimisation step on the next batch; returns its loss."""
        self.generator.train()
        self.encoder.train()
        targets, references = self.sampler.batch(self.step)
        loss = self.loss(targets, references)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.optimizer.param_groups:  # a resumed run may change the rate too
            group["lr"] = self.lr_at(self.step)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def evaluate(
        self,
        *,
        full_frames: Sequence[np.ndarray] | None = None,
        measure_opening: OpeningMeasure | None = None,
    ) -> dict[str, float]:
        """Metrics on the held-out frames (``lipstream.avatar.evaluate.evaluate``)."""
        frames = list(self.held_out_frames)
        if len(frames) < 2:  # the cross-reference metrics need a second held-out frame
            return {}
        return evaluate(
            self.generator,
            self.encoder,
            self.data.crops,
            self.mel,
            frames,
            boxes=[self.data.box(i) for i in frames],
            full_frames=full_frames,
            measure_opening=measure_opening,
            layout=self.config.layout,
        )

    # checkpoints ----------------------------------------------------------------------------

    def _networks(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "encoder": self.encoder}

    def save_checkpoint(self, directory: Path, loss: float) -> Path:
        """Write ``step_N.safetensors`` (weights), ``.optimizer.pt`` and ``.json`` (progress)."""
        info = {
            "step": self.step,
            "loss": loss,
            "elapsed_s": self.elapsed_s,
            "config": dataclasses.asdict(self.config),
        }
        return save_checkpoint(directory, self.step, self._networks(), self.optimizer, info)

    def load_checkpoint(self, weights_path: Path) -> None:
        """Restore the networks, the optimiser and the step count from a checkpoint."""
        checkpoint = read_checkpoint(weights_path, self.device)
        info = checkpoint.info
        width = info.get("config", {}).get("width")
        if width != self.config.width:
            raise CheckpointError(
                f"{weights_path} was trained at width {width}; this run asks for "
                f"{self.config.width} (pass the same --width to resume)"
            )
        layout = FeatureLayout(**info["config"].get("layout", SYNCTALK2D.to_dict()))
        if layout != self.config.layout:
            raise CheckpointError(
                f"{weights_path} was trained for the feature layout {layout.describe()}; this "
                f"run asks for {self.config.layout.describe()} (pass the same layout to resume)"
            )
        for name, module in self._networks().items():
            load_strict(module, checkpoint.weights(name), str(weights_path))
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        self.step = int(info["step"])
        self.elapsed_s = float(info.get("elapsed_s", 0.0))
        self.last_loss = float(info.get("loss", float("nan")))


# --------------------------------------------------------------------------------------------
# The whole run


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    package: ModelPackage
    metrics: dict[str, float]
    steps: int
    run_dir: Path
    trained_frames: frozenset[int]  # every frame index used as a target or reference
    held_out_frames: range


def train(
    dataset_dir: str | Path,
    models_dir: str | Path,
    name: str,
    config: TrainConfig | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    measure_opening: OpeningMeasure | None = None,
    avatar_frames: str | Path | None = None,
) -> TrainResult:
    """Train on a dataset, evaluate on its held-out tail and write the package ``models_dir/name``.

    Checkpoints go to ``run_dir/checkpoints`` (default ``<dataset_dir>/training``). Without
    ``resume`` a run_dir that already holds checkpoints is refused; with it, training continues
    from the newest one up to ``config.steps``. ``measure_opening`` (default: the landmark
    detector, when installed) measures mouth opening for the sync score. ``avatar_frames``:
    a dataset whose frames the package shows instead of the training dataset's own.
    """
    config = config or TrainConfig()
    dataset_dir = Path(dataset_dir)
    check_name(name)
    destination = Path(models_dir) / name
    if destination.exists() and not force:  # before hours of training, not after
        raise PackageError(f"model package {destination} already exists (use force to replace it)")
    run_path = Path(run_dir) if run_dir is not None else dataset_dir / "training"
    existing = checkpoints(run_path)
    if existing and not resume:
        raise InvalidInput(
            f"{run_path / CHECKPOINTS_DIR} already holds checkpoints up to step {existing[-1][0]}: "
            "resume from them, or delete the folder to start over"
        )
    data = load_training_data(dataset_dir, config.layout)
    trainer = Trainer(data, config)
    if trainer.device.type == "cpu":
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
    if existing:
        trainer.load_checkpoint(existing[-1][1])

    loss = _run_steps(trainer, run_path, progress)
    if not existing or existing[-1][0] != trainer.step:
        trainer.save_checkpoint(run_path / CHECKPOINTS_DIR, loss)
        prune_checkpoints(run_path, config.keep_checkpoints)

    if measure_opening is None:
        measure_opening = default_opening_measure()
    package, metrics = write_package(
        trainer,
        models_dir,
        name,
        force=force,
        measure_opening=measure_opening,
        final_loss=loss,
        avatar_frames=avatar_frames,
    )
    return TrainResult(
        package=package,
        metrics=metrics,
        steps=trainer.step,
        run_dir=run_path,
        trained_frames=frozenset(trainer.sampler.drawn),
        held_out_frames=trainer.held_out_frames,
    )


def _run_steps(trainer: Trainer, run_path: Path, progress: bool) -> float:
    """Train up to ``config.steps``, checkpointing on the way; returns the last smoothed loss."""
    from tqdm import tqdm

    config = trainer.config
    smoothed = trainer.last_loss
    bar = tqdm(
        total=config.steps,
        initial=trainer.step,
        disable=not progress,
        desc="training",
        unit="step",
        dynamic_ncols=True,
    )
    with bar:
        while trainer.step < config.steps:
            started = time.perf_counter()
            loss = trainer.train_step()
            trainer.elapsed_s += time.perf_counter() - started
            # the mean of recent batches says more than one batch's loss
            smoothed = loss if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.4f}")
            if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
                trainer.save_checkpoint(run_path / CHECKPOINTS_DIR, smoothed)
                prune_checkpoints(run_path, config.keep_checkpoints)
    return smoothed
