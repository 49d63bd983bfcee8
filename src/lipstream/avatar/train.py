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

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lipstream.audio import timeline as tl
from lipstream.audio.features import encoder_windows
from lipstream.audio.files import read_audio_file
from lipstream.audio.mel import StreamingMel
from lipstream.audio.pcm import AudioChunk, as_float_samples
from lipstream.avatar.dataset import load_dataset
from lipstream.avatar.evaluate import (
    MOUTH_COLS,
    MOUTH_ROWS,
    OpeningMeasure,
    audio_features,
    default_opening_measure,
    evaluate,
    network_input,
)
from lipstream.errors import CheckpointError, InvalidInput, PackageError
from lipstream.geometry import CROP_SIZE, NETWORK_SIZE, CropBox, inner
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.checkpoint import load_strict
from lipstream.model.network import Generator, GeneratorConfig
from lipstream.model.package import ModelPackage, check_name
from lipstream.model.package_writer import PackageWriter
from lipstream.video import read_video_frames

CHECKPOINTS_DIR = "checkpoints"
# Seconds of the training speech a package ships for int8 calibration.
CALIBRATION_SECONDS = 30
_CHECKPOINT_RE = re.compile(r"^step_(\d+)\.safetensors$")
_GENERATOR_PREFIX = "generator/"
_ENCODER_PREFIX = "encoder/"


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

    def __post_init__(self) -> None:
        GeneratorConfig(self.width)  # validates the width
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
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
# The dataset


@dataclass(frozen=True, eq=False)
class TrainingData:
    """A dataset in memory: every crop decoded once, the mel windows computed once."""

    path: Path
    name: str
    crops: np.ndarray  # uint8 [N, 328, 328, 3] BGR
    bounds: np.ndarray  # int32 [N, 4]: xmin, ymin, xmax, ymax in video pixels
    speech: AudioChunk  # 16 kHz mono
    mel_windows: np.ndarray  # float32 [N + 6, 1, 80, 16]: every encoder window the frames use
    video_path: Path
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        """Frames in the dataset."""
        return len(self.crops)

    def split(self, held_out_fraction: float) -> tuple[range, range]:
        """(training frames, held-out frames): the held-out ones are the last of the video."""
        held = math.ceil(self.frame_count * held_out_fraction) if held_out_fraction > 0 else 0
        train = self.frame_count - held
        if train < 2:
            raise InvalidInput(
                f"dataset {self.path} has {self.frame_count} frames; with "
                f"{held_out_fraction:.0%} held out, fewer than 2 remain to train on"
            )
        return range(train), range(train, self.frame_count)

    def box(self, index: int) -> CropBox:
        """The crop box of frame ``index`` in video pixels."""
        return CropBox.from_bounds(self.bounds[index])


def mel_windows(speech: AudioChunk | np.ndarray, frame_count: int) -> np.ndarray:
    """Every encoder input float32 [frame_count + 6, 1, 80, 16] that frames 0..N-1 read.

    The speech is continued by silence (or cut) where frame N-1's lookahead ends, exactly as the
    streaming feature path does, so training sees the features serving computes.
    """
    x = as_float_samples(speech)
    needed = tl.samples_needed(frame_count - 1)
    x = np.concatenate([x[:needed], np.zeros(max(needed - len(x), 0), dtype=x.dtype)])
    mel = StreamingMel().push(x)
    starts = [
        tl.encoder_window_start(j) for j in range(tl.last_encoder_window(frame_count - 1) + 1)
    ]
    return encoder_windows(mel, 0, starts)


def load_training_data(dataset_dir: str | Path) -> TrainingData:
    """Read a dataset made by ``lipstream build`` into memory, validated by ``load_dataset``."""
    dataset = load_dataset(dataset_dir)
    count = dataset.frame_count
    crops = np.empty((count, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i in range(count):
        try:
            crops[i] = dataset.read_crop(i)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"crop {dataset.crop_path(i)} does not decode: {exc}") from None
    speech = read_audio_file(dataset.speech_path, sample_rate=tl.SAMPLE_RATE)
    return TrainingData(
        path=dataset.path,
        name=dataset.name,
        crops=crops,
        bounds=np.asarray(dataset.bounds),
        speech=speech,
        mel_windows=mel_windows(speech, count),
        video_path=dataset.video_path,
        source=dict(dataset.source or {}),
    )


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
        audio = audio_features(self.encoder, self.mel, list(targets))
        predicted = self.generator(image, audio.contiguous(memory_format=torch.channels_last))
        truth = torch.from_numpy(np.ascontiguousarray(target)).to(self.device)
        truth = truth.permute(0, 3, 1, 2).float().div_(255.0)
        return reconstruction_loss(predicted, truth, self.weight, self.config.gradient_weight)

    def train_step(self) -> float:
        """One optimisation step on the next batch; returns its loss."""
        self.generator.train()
        self.encoder.train()
        targets, references = self.sampler.batch(self.step)
        loss = self.loss(targets, references)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
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
        )

    # checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self, directory: Path, loss: float) -> Path:
        """Write ``step_N.safetensors`` (weights), ``.optimizer.pt`` and ``.json`` (progress)."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / f"step_{self.step}"
        tensors = {
            **{_GENERATOR_PREFIX + k: v for k, v in self.generator.state_dict().items()},
            **{_ENCODER_PREFIX + k: v for k, v in self.encoder.state_dict().items()},
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        info = {
            "step": self.step,
            "loss": loss,
            "elapsed_s": self.elapsed_s,
            "config": dataclasses.asdict(self.config),
        }
        # The weights file is written last and renamed into place: it is what marks a
        # checkpoint as present, so an interrupted save is never picked up by a resume.
        torch.save(self.optimizer.state_dict(), _tmp(stem, ".optimizer.pt"))
        os.replace(_tmp(stem, ".optimizer.pt"), stem.with_suffix(".optimizer.pt"))
        _tmp(stem, ".json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        os.replace(_tmp(stem, ".json"), stem.with_suffix(".json"))
        save_file(tensors, str(_tmp(stem, ".safetensors")))
        os.replace(_tmp(stem, ".safetensors"), stem.with_suffix(".safetensors"))
        return stem.with_suffix(".safetensors")

    def load_checkpoint(self, weights_path: Path) -> None:
        """Restore the networks, the optimiser and the step count from a checkpoint."""
        from safetensors.torch import load_file

        stem = weights_path.with_suffix("")
        try:
            info = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
            tensors = load_file(str(weights_path))
            # weights_only: the optimiser state is tensors, numbers and lists, nothing to execute
            optimizer_state = torch.load(
                stem.with_suffix(".optimizer.pt"), map_location=self.device, weights_only=True
            )
        except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read checkpoint {weights_path}: {exc}") from exc
        width = info.get("config", {}).get("width")
        if width != self.config.width:
            raise CheckpointError(
                f"{weights_path} was trained at width {width}; this run asks for "
                f"{self.config.width} (pass the same --width to resume)"
            )
        for prefix, module in (
            (_GENERATOR_PREFIX, self.generator),
            (_ENCODER_PREFIX, self.encoder),
        ):
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            load_strict(module, state, str(weights_path))
        self.optimizer.load_state_dict(optimizer_state)
        for group in self.optimizer.param_groups:  # a resumed run may change the rate
            group["lr"] = self.config.lr
        self.step = int(info["step"])
        self.elapsed_s = float(info.get("elapsed_s", 0.0))
        self.last_loss = float(info.get("loss", float("nan")))


def _tmp(stem: Path, suffix: str) -> Path:
    return stem.parent / f".{stem.name}{suffix}.tmp"


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, weights file) of every complete checkpoint under ``run_dir``, oldest first."""
    directory = Path(run_dir) / CHECKPOINTS_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        stem = path.with_suffix("")
        if (
            match
            and stem.with_suffix(".json").is_file()
            and stem.with_suffix(".optimizer.pt").is_file()
        ):
            found.append((int(match.group(1)), path))
    return sorted(found)


def _prune_checkpoints(run_dir: Path, keep: int) -> None:
    for _, path in checkpoints(run_dir)[:-keep]:
        stem = path.with_suffix("")
        for suffix in (".safetensors", ".optimizer.pt", ".json"):
            stem.with_suffix(suffix).unlink(missing_ok=True)


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
    data = load_training_data(dataset_dir)
    trainer = Trainer(data, config)
    if trainer.device.type == "cpu":
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
    if existing:
        trainer.load_checkpoint(existing[-1][1])

    loss = _run_steps(trainer, run_path, progress)
    if not existing or existing[-1][0] != trainer.step:
        trainer.save_checkpoint(run_path / CHECKPOINTS_DIR, loss)
        _prune_checkpoints(run_path, config.keep_checkpoints)

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
                _prune_checkpoints(run_path, config.keep_checkpoints)
    return smoothed


def write_package(
    trainer: Trainer,
    models_dir: str | Path,
    name: str,
    *,
    force: bool = False,
    measure_opening: OpeningMeasure | None = None,
    final_loss: float = float("nan"),
    avatar_frames: str | Path | None = None,
    float16: bool = False,
) -> tuple[ModelPackage, dict[str, float]]:
    """Evaluate on the held-out frames and write the package: the avatar's frames, speech,
    both networks' weights (PyTorch), the metrics and where it all came from.

    The avatar's frames (what the browser plays and mouths are pasted on) are the training
    dataset's, or those of the dataset at ``avatar_frames`` (a shorter clip, e.g. at rest).
    """
    data = trainer.data
    held = set(trainer.held_out_frames)
    held_frames: list[np.ndarray] = []
    if measure_opening is not None:
        for i, frame in enumerate(read_video_frames(data.video_path)):
            if i in held:
                held_frames.append(frame)
    metrics = trainer.evaluate(
        full_frames=held_frames if measure_opening is not None else None,
        measure_opening=measure_opening,
    )
    metrics.update(
        steps=float(trainer.step),
        train_seconds=round(trainer.elapsed_s, 1),
        final_loss=final_loss,
        held_out_frames=float(len(trainer.held_out_frames)),
    )
    # a package holds finite numbers only: an undefined score (e.g. a constant track) is
    # left out rather than written as NaN
    metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    frames = data if avatar_frames is None else load_training_data(avatar_frames)
    with PackageWriter(models_dir, name, force=force) as writer:
        for i, frame in enumerate(read_video_frames(frames.video_path)):
            if i >= frames.frame_count:
                raise InvalidInput(
                    f"{frames.video_path} has more frames than its dataset's {frames.frame_count}"
                )
            writer.add_frame(frame, frames.box(i), crop=frames.crops[i])
        if writer.frame_count != frames.frame_count:
            raise InvalidInput(
                f"{frames.video_path} has {writer.frame_count} frames, its dataset "
                f"{frames.frame_count}"
            )
        # some of the avatar's speech, for int8 calibration: enough for it, small to ship
        calibration = data.speech.samples[: CALIBRATION_SECONDS * data.speech.sample_rate]
        writer.add_speech(AudioChunk(calibration, data.speech.sample_rate))
        writer.add_weights("pytorch.generator", trainer.generator.state_dict(), float16=float16)
        writer.add_weights("pytorch.audio_encoder", trainer.encoder.state_dict(), float16=float16)
        source = {
            "kind": "lipstream-train",
            "dataset": str(data.path),
            "dataset_name": data.name,
            "dataset_source": data.source,
            "avatar_frames": str(frames.path),
            "config": dataclasses.asdict(trainer.config),
            "device": trainer.device.type,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        package = writer.commit(
            generator_width=trainer.config.width, metrics=metrics, source=source
        )
    return package, metrics


# --------------------------------------------------------------------------------------------
# Command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` subcommand."""
    defaults = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train an avatar's lip-sync model from its dataset and write its model package",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="dataset name (its folder under --datasets-dir) and package name")
    p.add_argument("--datasets-dir", type=Path, default=Path("datasets"), help="default: datasets")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="default: models")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"default: {defaults.steps}")
    p.add_argument(
        "--width",
        type=float,
        default=defaults.width,
        help=f"generator width, default {defaults.width}",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"default: {defaults.batch_size}",
    )
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"default: {defaults.lr}")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        help=f"steps between checkpoints, default {defaults.checkpoint_every}",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help=f"default: {defaults.seed}")
    p.add_argument(
        "--run-dir",
        type=Path,
        help="where checkpoints go; default: <datasets-dir>/<name>/training",
    )
    p.add_argument(
        "--avatar-frames",
        metavar="DATASET",
        help="a dataset (under --datasets-dir) whose frames the package shows, e.g. a short "
        "clip at rest; default: the training dataset's own frames",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--force", action="store_true", help="replace a package of the same name")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=defaults.device)
    p.add_argument("--threads", type=int, default=0, help="CPU threads; default: every core")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    config = TrainConfig(
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        threads=args.threads,
    )
    result = train(
        args.datasets_dir / args.name,
        args.models_dir,
        args.name,
        config,
        run_dir=args.run_dir,
        resume=args.resume,
        force=args.force,
        progress=sys.stderr.isatty(),
        avatar_frames=args.datasets_dir / args.avatar_frames if args.avatar_frames else None,
    )
    print(f"{result.package.name}: {result.steps} steps, package {result.package.path}")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key}: {value:g}")
    return 0
