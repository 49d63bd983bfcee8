"""Fixtures for model tests: a small fake SyncTalk_2D dataset and the package imported from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipstream.audio.files import write_wav
from lipstream.audio.pcm import AudioChunk

FRAME_SIZE = (480, 360)  # width, height: a small landscape "full body" video
FRAME_COUNT = 12
DATASET_NAME = "demo"
LANDMARK_COUNT = 110  # SyncTalk_2D's landmark files hold 110 points


def fake_landmarks(index: int) -> np.ndarray:
    """Float landmarks [110, 2] of a face that drifts a few pixels from frame to frame.

    Only indices 1 (left cheek), 31 (right cheek) and 52 (mid-nose) shape the crop; the others
    sit on an ellipse so the file looks like a real one.
    """
    cx, cy = 240.0 + 3.0 * math.sin(index / 2.0), 150.0 + 2.0 * math.cos(index / 3.0)
    angles = np.linspace(0.0, 2.0 * math.pi, LANDMARK_COUNT, endpoint=False)
    pts = np.stack([cx + 70.0 * np.cos(angles), cy + 90.0 * np.sin(angles)], axis=1)
    pts[1] = (cx - 72.25, cy + 10.5)
    pts[31] = (cx + 71.75, cy + 12.0)
    pts[52] = (cx + 0.5, cy + 20.75)
    return pts


def expected_bounds(index: int) -> list[int]:
    """The box SyncTalk_2D computes from ``fake_landmarks(index)`` (values cast to int)."""
    lms = fake_landmarks(index).astype(np.int32)
    xmin, xmax, ymin = int(lms[1, 0]), int(lms[31, 0]), int(lms[52, 1])
    return [xmin, ymin, xmax, ymin + (xmax - xmin)]


def fake_frame(index: int) -> np.ndarray:
    """A BGR frame with a face-like drawing whose mouth opens and closes."""
    width, height = FRAME_SIZE
    ramp = np.linspace(60, 160, width, dtype=np.float32)
    img = np.repeat(ramp[None, :, None], height, axis=0).repeat(3, axis=2).astype(np.uint8)
    img[..., 0] = 120  # a blue-ish backdrop
    lms = fake_landmarks(index)
    cx, cy = int(lms[52, 0]), int(lms[52, 1]) - 20
    cv2.ellipse(img, (cx, cy), (70, 90), 0, 0, 360, (150, 180, 225), -1)  # skin
    cv2.circle(img, (cx - 28, cy - 25), 8, (60, 40, 30), -1)
    cv2.circle(img, (cx + 28, cy - 25), 8, (60, 40, 30), -1)
    opening = 4 + 3 * (index % 4)
    cv2.ellipse(img, (cx, cy + 45), (24, opening), 0, 0, 360, (70, 60, 170), -1)  # mouth
    cv2.rectangle(img, (cx - 90, cy + 95), (cx + 90, height - 1), (90, 90, 40), -1)  # body
    return img


def fake_speech(seconds: float, rate: int) -> np.ndarray:
    """A voiced, syllable-paced signal (harmonics of 120 Hz under a 4 Hz envelope) in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 20))
    return (0.3 * voice * np.clip(np.sin(2 * np.pi * 4 * t), 0, None) / 3).astype(np.float32)


def build_synctalk2d_dataset(root: Path, frames: int = FRAME_COUNT) -> Path:
    """Write a fake trained SyncTalk_2D dataset under ``root`` and return its folder."""
    from lipstream.model.audio_encoder import AudioEncoder
    from lipstream.model.network import Generator, GeneratorConfig

    dataset = root / DATASET_NAME
    (dataset / "full_body_img").mkdir(parents=True)
    (dataset / "landmarks").mkdir()
    for i in range(frames):
        cv2.imwrite(str(dataset / "full_body_img" / f"{i}.jpg"), fake_frame(i))
        text = "\n".join(f"{x:.6f} {y:.6f}" for x, y in fake_landmarks(i))
        (dataset / "landmarks" / f"{i}.lms").write_text(text + "\n")

    torch.manual_seed(0)
    ckpt_dir = dataset / "checkpoint" / DATASET_NAME
    ckpt_dir.mkdir(parents=True)
    generator = Generator(GeneratorConfig(width=0.25))
    torch.save(generator.state_dict(), ckpt_dir / "5.pth")
    # A later epoch with different weights: the importer must pick it (20 > 5, not "5" > "20").
    for p in generator.parameters():
        p.data.add_(0.01)
    torch.save(generator.state_dict(), ckpt_dir / "20.pth")

    # SyncTalk_2D extracts the training speech as aud.wav; 24 kHz here to exercise resampling.
    write_wav(dataset / "aud.wav", AudioChunk.from_float(fake_speech(frames / 25, 24000), 24000))

    # SyncTalk_2D's encoder files hold the keys without the module prefix.
    state = {k.removeprefix("audio_encoder."): v for k, v in AudioEncoder().state_dict().items()}
    torch.save(state, dataset / "audio_visual_encoder.pth")
    return dataset


@dataclass(frozen=True)
class FakeAvatar:
    """What the fake dataset holds, for tests to compare against (conftest is not importable)."""

    frame_count: int = FRAME_COUNT
    frame_size: tuple[int, int] = FRAME_SIZE

    def frame(self, index: int) -> np.ndarray:
        """The full-body BGR frame ``index`` as drawn (before JPEG)."""
        return fake_frame(index)

    def bounds(self, index: int) -> list[int]:
        """The crop box SyncTalk_2D's rule gives for frame ``index``."""
        return expected_bounds(index)


@pytest.fixture(scope="session")
def fake_avatar() -> FakeAvatar:
    """The frames and boxes of ``synctalk2d_dataset``."""
    return FakeAvatar()


@pytest.fixture(scope="session")
def synctalk2d_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fake SyncTalk_2D dataset (12 frames of 480x360); copy it before changing it.

    Holds ``full_body_img/``, ``landmarks/``, ``checkpoint/demo/{5,20}.pth`` (width-0.25
    random generator) and ``audio_visual_encoder.pth`` (keys without prefix).
    """
    return build_synctalk2d_dataset(tmp_path_factory.mktemp("synctalk2d"))


@pytest.fixture(scope="session")
def fake_package(synctalk2d_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synctalk2d_dataset`` imported as package ``demo``; copy it before changing it."""
    from lipstream.model.import_synctalk2d import import_synctalk2d

    models = tmp_path_factory.mktemp("models")
    pkg = import_synctalk2d(
        synctalk2d_dataset,
        audio_encoder=synctalk2d_dataset / "audio_visual_encoder.pth",
        name="demo",
        models_dir=models,
        progress=False,
    )
    return pkg.path
