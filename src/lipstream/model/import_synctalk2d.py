"""Turning a trained SyncTalk_2D dataset folder into a lipstream model package.

A SyncTalk_2D dataset holds ``full_body_img/<i>.jpg`` and ``landmarks/<i>.lms`` for frames
``0..N-1``; training writes ``checkpoint/<name>/<epoch>.pth``. The importer takes the newest
checkpoint (or the one given), the AVE audio encoder, computes every crop and box from the
landmarks, encodes the frames as the avatar's video and writes the package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
from tqdm import tqdm

from lipstream.audio.files import read_audio_file
from lipstream.errors import CheckpointError, InvalidInput, PackageError
from lipstream.geometry import crop_box, read_landmarks
from lipstream.model.package import (
    ModelPackage,
    check_name,
)
from lipstream.model.package_writer import PackageWriter

if TYPE_CHECKING:  # torch is only imported when an import actually runs
    from lipstream.model.audio_encoder import AudioEncoder
    from lipstream.model.network import Generator

FRAMES_DIR = "full_body_img"
LANDMARKS_DIR = "landmarks"
CHECKPOINT_DIR = "checkpoint"

# SyncTalk_2D keeps the training speech beside the frames
SPEECH_FILE = "aud.wav"
_EPOCH_FILE = re.compile(r"(\d+)\.pth")
_FRAME_FILE = re.compile(r"(\d+)\.jpg")


def _epoch_files(folder: Path) -> list[tuple[int, Path]]:
    return sorted(
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_file() and (m := _EPOCH_FILE.fullmatch(p.name))
    )


def find_checkpoint(dataset: str | Path, checkpoint: str | Path | None = None) -> Path:
    """The generator checkpoint to import: ``checkpoint`` itself, or the highest ``<epoch>.pth``.

    ``checkpoint`` may be a ``.pth`` file or a folder of epoch files. Without it, the folders
    searched are ``<dataset>/checkpoint/<dataset name>/``, the only folder under
    ``<dataset>/checkpoint/``, ``<dataset>/checkpoint/`` itself, and
    ``<dataset>/../../checkpoint/<dataset name>/`` (SyncTalk_2D's own layout:
    ``dataset/<name>/`` beside ``checkpoint/<name>/``).
    """
    dataset = Path(dataset)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.is_file():
            return checkpoint
        if checkpoint.is_dir():
            found = _epoch_files(checkpoint)
            if not found:
                raise InvalidInput(f"checkpoint folder {checkpoint} holds no <epoch>.pth file")
            return found[-1][1]
        raise InvalidInput(f"checkpoint not found: {checkpoint}")

    root = dataset / CHECKPOINT_DIR
    candidates = [root / dataset.name]
    if root.is_dir():
        subdirs = [p for p in root.iterdir() if p.is_dir()]
        if len(subdirs) == 1:
            candidates.append(subdirs[0])
    candidates += [root, dataset.resolve().parent.parent / CHECKPOINT_DIR / dataset.name]
    for folder in candidates:
        if folder.is_dir() and (found := _epoch_files(folder)):
            return found[-1][1]
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise InvalidInput(
        f"no generator checkpoint (<epoch>.pth) found; looked in {looked}; "
        "pass the file or its folder as the checkpoint"
    )


def find_frames(dataset: str | Path) -> list[tuple[Path, Path]]:
    """``(image, landmarks)`` paths of every frame, in order; names every missing piece."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InvalidInput(f"dataset folder not found: {dataset}")
    frames_dir, lms_dir = dataset / FRAMES_DIR, dataset / LANDMARKS_DIR
    problems = []
    if not frames_dir.is_dir():
        problems.append(f"{frames_dir} is missing (the avatar's frames, <i>.jpg)")
    if not lms_dir.is_dir():
        problems.append(f"{lms_dir} is missing (one <i>.lms landmarks file per frame)")
    if problems:
        raise InvalidInput(f"{dataset} is not a SyncTalk_2D dataset: " + "; ".join(problems))
    indices = sorted(
        int(m.group(1)) for p in frames_dir.iterdir() if (m := _FRAME_FILE.fullmatch(p.name))
    )
    if not indices:
        raise InvalidInput(f"{frames_dir} holds no frames named <i>.jpg")
    gaps = sorted(set(range(indices[-1] + 1)) - set(indices))
    if gaps:
        problems.append(f"{frames_dir} lacks frame(s) {_few(f'{i}.jpg' for i in gaps)}")
    no_lms = [i for i in indices if not (lms_dir / f"{i}.lms").is_file()]
    if no_lms:
        problems.append(
            f"{lms_dir} lacks landmarks for frame(s) {_few(f'{i}.lms' for i in no_lms)}"
        )
    if problems:
        raise InvalidInput("; ".join(problems))
    return [(frames_dir / f"{i}.jpg", lms_dir / f"{i}.lms") for i in indices]


def _few(names: Iterable[str]) -> str:
    items = list(names)
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return ", ".join(items[:5]) + more


def import_synctalk2d(
    dataset: str | Path,
    *,
    audio_encoder: str | Path,
    name: str,
    models_dir: str | Path = "models",
    checkpoint: str | Path | None = None,
    force: bool = False,
    version: str = "1.0.0",
    float16: bool = False,
    progress: bool = True,
) -> ModelPackage:
    """Import a SyncTalk_2D dataset and its trained generator as package ``models_dir/name``.

    ``float16`` stores the weights at half precision (half the size).
    """
    # Everything cheap is checked before the long loop, so a bad input fails in a second.
    check_name(name)
    destination = Path(models_dir) / name
    if destination.exists() and not force:
        raise PackageError(f"model package {destination} already exists (use --force to replace)")
    frames = find_frames(dataset)
    ckpt = find_checkpoint(dataset, checkpoint)
    generator, width = _load_generator(ckpt)
    encoder = _load_audio_encoder(Path(audio_encoder))

    with PackageWriter(models_dir, name, force=force) as writer:
        for image_path, lms_path in tqdm(
            frames, desc=f"import {name}", unit="frame", disable=not progress
        ):
            frame = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if frame is None:
                raise InvalidInput(f"{image_path} is not a readable image")
            try:
                box = crop_box(read_landmarks(lms_path), frame.shape[1], frame.shape[0])
            except InvalidInput as exc:
                raise InvalidInput(f"frame {image_path.name}: {exc}") from exc
            writer.add_frame(frame, box)
        speech = Path(dataset) / SPEECH_FILE
        if speech.is_file():  # the dataset's own speech: what int8 export calibrates on
            writer.add_speech(read_audio_file(speech))
        writer.add_weights("pytorch.generator", generator.state_dict(), float16=float16)
        writer.add_weights("pytorch.audio_encoder", encoder.state_dict(), float16=float16)
        epoch = _EPOCH_FILE.fullmatch(ckpt.name)
        return writer.commit(
            generator_width=width,
            version=version,
            source={
                "kind": "synctalk2d-import",
                "dataset": Path(dataset).resolve().name,
                "checkpoint": ckpt.name,
                "epoch": int(epoch.group(1)) if epoch else None,
                "audio_encoder": Path(audio_encoder).name,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )


def _load_generator(path: Path) -> tuple[Generator, float]:
    """The generator from a checkpoint and its width; errors name the file and the bad keys."""
    from lipstream.model.synctalk2d import load_generator

    try:
        net = load_generator(path)
    except CheckpointError as exc:
        raise CheckpointError(f"generator checkpoint: {exc}") from exc
    return net, net.cfg.width


def _load_audio_encoder(path: Path) -> AudioEncoder:
    """The AVE encoder from its checkpoint; errors name the file."""
    from lipstream.model.synctalk2d import load_audio_encoder

    if not path.is_file():
        raise InvalidInput(f"audio encoder checkpoint not found: {path}")
    try:
        return load_audio_encoder(path)
    except CheckpointError as exc:
        raise CheckpointError(f"audio encoder checkpoint: {exc}") from exc
