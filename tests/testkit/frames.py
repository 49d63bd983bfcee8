"""Talking to the frame generator in tests: waiting for a message, decoding a mouth."""

from __future__ import annotations

import json
import time

import numpy as np
import simplejpeg


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
