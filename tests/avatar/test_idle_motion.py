"""Idle life: blinks every few seconds that close the eyes, a head sway that is small and slow."""

from __future__ import annotations

import numpy as np
import pytest
from testkit.astronaut import EYES

from lipstream.audio.timeline import FPS
from lipstream.avatar.face_rig import FaceRig, Pose
from lipstream.avatar.idle_motion import idle_motion

pytest.importorskip("skimage.data")


def test_blinks_close_the_eyes_every_few_seconds(rig: FaceRig, portrait: np.ndarray) -> None:
    motion = idle_motion(30 * FPS, seed=3)
    closed = np.nonzero(motion.blink >= 1.0)[0] / FPS
    assert 4 <= len(closed) <= 15
    assert np.all(np.diff(closed) >= 1.9) and np.all(np.diff(closed) <= 6.1)
    # A blink takes about 150 ms: a few frames, not more.
    assert np.count_nonzero(motion.blink > 0.3) <= 4 * len(closed)
    shut, points = rig.render(Pose(blink=1.0))
    assert np.abs(shut[EYES].astype(int) - portrait[EYES].astype(int)).mean() > 5
    assert np.abs(points[37, 1] - points[41, 1]) < 1.0  # upper and lower lid meet


def test_head_sway_is_small_and_slow() -> None:
    motion = idle_motion(20 * FPS, speaking=np.zeros(20 * FPS), seed=0)
    roll, dx, dy = motion.head.T
    assert np.abs(roll).max() < np.radians(3) and np.abs(dx).max() < 0.1
    assert np.abs(roll).max() > np.radians(0.3)  # it does move
    assert np.abs(np.diff(roll)).max() < np.radians(0.2)
