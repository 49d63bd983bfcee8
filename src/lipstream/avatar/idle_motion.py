"""Life in a portrait between and during words: blinks, a slow head sway, brow movement.

``idle_motion`` plans every frame of a clip at once: a blink every 2-6 s (a fast close and a
slower open, about 160 ms), a head that rolls and shifts a little on slow smooth noise, and brows
that wander; while the avatar speaks, the head nods slightly and the brows rise with the
phrases. ``IdleMotion.pose`` combines a frame's plan with a mouth shape into the ``Pose`` a face
rig renders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lipstream.audio.timeline import FPS
from lipstream.avatar.face_rig import Pose


@dataclass(frozen=True)
class IdleMotion:
    """Per-frame blink (0..1), brow raise (0..1) and head (roll rad, dx, dy in iod)."""

    blink: np.ndarray
    brow: np.ndarray
    head: np.ndarray

    def pose(self, k: int, mouth: Sequence[float]) -> Pose:
        """The full pose of frame ``k`` with the given mouth shape."""
        roll, dx, dy = (float(v) for v in self.head[k])
        return Pose(
            mouth=(float(mouth[0]), float(mouth[1]), float(mouth[2])),
            blink=float(self.blink[k]),
            brow=float(self.brow[k]),
            head=(roll, dx, dy),
        )


_BLINK_SHAPE = (0.55, 1.0, 0.75, 0.35, 0.1)  # per frame: a fast close, a slower open (~160 ms)


def _wander(n: int, fps: int, rng: np.random.Generator, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Slow smooth noise in about [-1, 1]: a few sines at random low frequencies and phases."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        freq, phase = rng.uniform(lo_hz, hi_hz), rng.uniform(0, 2 * math.pi)
        out += np.sin(2 * math.pi * freq * t + phase)
    return out / 2.0


def idle_motion(
    n_frames: int, speaking: np.ndarray | None = None, seed: int = 0, fps: int = FPS
) -> IdleMotion:
    """Blinks every 2-6 s, a slow head sway and brow movement, livelier while speaking.

    ``speaking``: the mouth opening per frame (0..1), if any; talking nods the head a little.
    """
    rng = np.random.default_rng(seed)
    blink = np.zeros(n_frames)
    t = rng.uniform(0.8, 2.5)
    while True:
        k = int(t * fps)
        if k + len(_BLINK_SHAPE) > n_frames:
            break
        blink[k : k + len(_BLINK_SHAPE)] = np.maximum(
            blink[k : k + len(_BLINK_SHAPE)], _BLINK_SHAPE
        )
        t += rng.uniform(2.0, 6.0)
    energy = np.zeros(n_frames)
    if speaking is not None and len(speaking):
        # Smoothed over about half a second: phrases, not syllables, move the head.
        kernel = np.hanning(13)
        energy = np.convolve(np.asarray(speaking, float), kernel / kernel.sum(), mode="same")
    roll = math.radians(1.3) * _wander(n_frames, fps, rng, 0.05, 0.35)
    dx = 0.035 * _wander(n_frames, fps, rng, 0.04, 0.3)
    dy = 0.02 * _wander(n_frames, fps, rng, 0.08, 0.4) + 0.03 * energy
    brow = np.clip(0.35 * _wander(n_frames, fps, rng, 0.1, 0.5) + 0.8 * energy - 0.1, 0, 1)
    return IdleMotion(blink, brow, np.stack([roll, dx, dy], axis=1))
