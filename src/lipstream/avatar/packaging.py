"""A trained avatar's model package: its held-out scores, its frames, its speech, its weights.

``write_package`` evaluates a ``Trainer``'s networks on the frames training never saw and writes,
with ``lipstream.model.package_writer.PackageWriter``, everything serving needs: the avatar's
video frames and crop boxes, some of its speech (for int8 calibration), both networks' PyTorch
weights, the metrics and where it all came from.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lipstream.audio.pcm import AudioChunk
from lipstream.avatar.evaluate import OpeningMeasure
from lipstream.avatar.training_data import load_training_data
from lipstream.errors import InvalidInput
from lipstream.model.package import ModelPackage
from lipstream.model.package_writer import PackageWriter
from lipstream.video import read_video_frames

if TYPE_CHECKING:
    from lipstream.avatar.train import Trainer

# Seconds of the training speech a package ships for int8 calibration.
CALIBRATION_SECONDS = 30


def write_package(
    trainer: Trainer,
    models_dir: str | Path,
    name: str,
    *,
    force: bool = False,
    measure_opening: OpeningMeasure | None = None,
    final_loss: float = float("nan"),
    avatar_frames: str | Path | None = None,
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
        writer.add_weights("pytorch.generator", trainer.generator.state_dict())
        writer.add_weights("pytorch.audio_encoder", trainer.encoder.state_dict())
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
            generator_width=trainer.config.width,
            layout=trainer.config.layout,
            metrics=metrics,
            source=source,
        )
    return package, metrics
