"""Talking to the frame generator in tests: waiting for a message, decoding a mouth, the
avatar's own frames."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import simplejpeg

from lipstream.model.package import load_package
from lipstream.video import read_video_frames


def receive(ws, kind: str, timeout: float = 20.0, seen: list | None = None) -> dict:
    """The next JSON message of type ``kind``; other messages go to ``seen``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind!r} message within {timeout} s")
        message = json.loads(ws.recv(timeout=left))
        if message["type"] == kind:
            return message
        if seen is not None:
            seen.append(message)


def decode_mouth(jpeg: bytes) -> np.ndarray:
    """A mouth JPEG as int16 BGR pixels (so differences do not wrap), checked to be 320x320."""
    image = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
    assert image.shape == (320, 320, 3)
    return image.astype(np.int16)


@lru_cache(maxsize=2)
def avatar_rgb_frames(package_dir: Path) -> np.ndarray:
    """A package's own video frames as RGB uint8 [N, H, W, 3], decoded here and not by the
    compositor: the truth a client's RGB frames are checked against."""
    video = load_package(package_dir).video_path
    frames = np.stack([frame[:, :, ::-1] for frame in read_video_frames(video)])
    frames.flags.writeable = False
    return frames
