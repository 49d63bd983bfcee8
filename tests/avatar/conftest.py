"""A small fake avatar dataset, laid out as ``lipstream build`` writes one, whose mouth follows
its speech: a synthetic face whose mouth opening tracks the loudness of a syllable-paced voice,
so that lip sync is learnable from it and the sync metric has something to find."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.astronaut import ASTRONAUT_POINTS, astronaut_portrait

from lipstream.audio.files import write_wav
from lipstream.audio.pcm import AudioChunk
from lipstream.avatar.face_rig import FaceRig
from lipstream.geometry import CropBox, crop_frame
from lipstream.video import Mp4Writer

FRAME_COUNT = 40
FRAME_SIZE = (256, 256)  # width, height of the "full body" video
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 640
BOX_SIDE = 140
MOUTH_COLOUR = (40, 30, 120)  # BGR: dark red, far darker than the skin
SKIN_COLOUR = (150, 180, 225)


def syllable_envelope(t: np.ndarray) -> np.ndarray:
    """Loudness in [0, 1] of a voice saying about four syllables a second, with a pause."""
    rate = 3.7 + 0.6 * np.sin(2 * math.pi * 0.4 * t)  # uneven pacing, like speech
    phase = 2 * math.pi * np.cumsum(rate) / SAMPLE_RATE
    env = np.clip(np.sin(phase), 0.0, None) ** 1.5
    env[(t > 0.62) & (t < 0.82)] = 0.0  # a short pause between words
    return env


def fake_speech() -> tuple[np.ndarray, np.ndarray]:
    """(float samples at 16 kHz, mouth opening in [0, 1] per video frame)."""
    t = np.arange(FRAME_COUNT * SAMPLES_PER_FRAME) / SAMPLE_RATE
    env = syllable_envelope(t)
    f0 = 120.0 + 15.0 * np.sin(2 * math.pi * 1.3 * t)  # a voiced sound with moving pitch
    phase = 2 * math.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(h * phase) / h for h in range(1, 12))
    samples = 0.25 * env * voice / 2.0
    opening = env.reshape(FRAME_COUNT, SAMPLES_PER_FRAME).mean(axis=1)
    return samples.astype(np.float32), opening / opening.max()


def frame_box(index: int) -> CropBox:
    """The face box of frame ``index``: a few pixels of head motion."""
    dx = round(2 * math.sin(index / 3.0))
    dy = round(2 * math.cos(index / 4.0))
    xmin, ymin = 58 + dx, 96 + dy
    return CropBox(xmin, ymin, xmin + BOX_SIDE, ymin + BOX_SIDE)


def mouth_centre(box: CropBox) -> tuple[int, int]:
    """Where the mouth sits in the frame: in the lower half of the network's mask."""
    return box.xmin + BOX_SIDE // 2, box.ymin + int(0.6 * BOX_SIDE)


def fake_frame(index: int, opening: float) -> np.ndarray:
    """A BGR full-body frame with a face whose mouth is ``opening`` (0..1) open."""
    width, height = FRAME_SIZE
    img = np.full((height, width, 3), (110, 90, 70), dtype=np.uint8)
    box = frame_box(index)
    cx, my = mouth_centre(box)
    cy = box.ymin + 20
    cv2.ellipse(img, (cx, cy), (80, 110), 0, 0, 360, SKIN_COLOUR, -1)
    cv2.circle(img, (cx, cy), 9, (120, 140, 190), -1)  # the nose
    cv2.ellipse(img, (cx, my), (28, 2 + round(14 * opening)), 0, 0, 360, MOUTH_COLOUR, -1)
    return img


def fake_landmarks(index: int, opening: float) -> np.ndarray:
    """68 iBUG-ordered points: the jaw and face on an ellipse, the lips around the mouth."""
    box = frame_box(index)
    cx, my = mouth_centre(box)
    pts = np.zeros((68, 2), dtype=np.float32)
    angles = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
    pts[:48] = np.stack([cx + 80 * np.cos(angles), box.ymin + 20 + 110 * np.sin(angles)], 1)
    lips = np.linspace(0.0, 2 * math.pi, 20, endpoint=False)
    half = 2 + 14 * opening
    pts[48:] = np.stack([cx + 28 * np.cos(lips), my + half * np.sin(lips)], 1)
    return pts


@dataclass(frozen=True)
class FakeDataset:
    path: Path
    opening: np.ndarray  # the true mouth opening per frame, 0..1

    @property
    def frame_count(self) -> int:
        return len(self.opening)


def write_fake_dataset(root: Path, name: str = "fake", with_speech: bool = True) -> FakeDataset:
    """Write ``root/name`` in the layout ``lipstream build`` produces."""
    path = root / name
    (path / "crops").mkdir(parents=True)
    samples, opening = fake_speech()
    width, height = FRAME_SIZE
    video = Mp4Writer(path / "video.mp4", width, height, 25)
    bounds, landmarks = [], []
    for i in range(FRAME_COUNT):
        frame = fake_frame(i, float(opening[i]))
        box = frame_box(i)
        crop = crop_frame(frame, box)
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        (path / "crops" / f"{i:06d}.jpg").write_bytes(data.tobytes())
        video.write(frame)
        bounds.append(box.as_list())
        landmarks.append(fake_landmarks(i, float(opening[i])))
    video.close()
    np.save(path / "landmarks.npy", np.stack(landmarks).astype(np.float32))
    if with_speech:
        write_wav(path / "speech.wav", AudioChunk.from_float(samples, SAMPLE_RATE))
    manifest = {
        "format": "lipstream-dataset",
        "format_version": 1,
        "name": name,
        "fps": 25,
        "frame_count": FRAME_COUNT,
        "video": {"file": "video.mp4", "width": width, "height": height},
        "bounds": bounds,
        "mouth_opening": [float(v) for v in opening],
        "interpolated_frames": [],
        "dropped": [],
        "source": {"kind": "synthetic"},
    }
    (path / "dataset.json").write_text(json.dumps(manifest), encoding="utf-8")
    return FakeDataset(path, opening)


def dark_mouth_height(frame: np.ndarray) -> float | None:
    """A stand-in for the landmark detector: the height of the dark mouth, in pixels.

    Counts dark pixels in a narrow column through the mouth's centre; None where no face
    colour is found (as a detector returns None without a face).
    """
    best: float | None = None
    for index in range(FRAME_COUNT):  # the boxes drift; take the column that holds the mouth
        cx, my = mouth_centre(frame_box(index))
        column = frame[my - 24 : my + 24, cx - 2 : cx + 3].astype(np.int32).sum(axis=2)
        skin = np.count_nonzero(column > 450)
        if skin == 0:
            continue
        dark = float(np.count_nonzero(column < 300)) / column.shape[1]
        best = dark if best is None else max(best, dark)
    return best


@pytest.fixture(scope="session")
def fake_dataset(tmp_path_factory: pytest.TempPathFactory) -> FakeDataset:
    """A 40-frame synthetic avatar dataset (read-only: tests write elsewhere)."""
    return write_fake_dataset(tmp_path_factory.mktemp("datasets"))


@pytest.fixture
def make_fake_dataset() -> Callable[..., FakeDataset]:
    """``make(root, name="fake", with_speech=True)``: write a fake dataset folder."""
    return write_fake_dataset


@pytest.fixture
def measure_opening() -> Callable[[np.ndarray], float | None]:
    """A mouth-opening measure for full-body frames of the fake dataset."""
    return dark_mouth_height


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The astronaut portrait the photo tests animate."""
    pytest.importorskip("skimage.data")
    return astronaut_portrait()


@pytest.fixture(scope="module")
def rig(portrait: np.ndarray) -> FaceRig:
    """The astronaut's face rig."""
    return FaceRig.build(portrait, ASTRONAUT_POINTS)
