"""A portrait's face rig: the mouth moves, the background stays put, bad faces are refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from testkit.astronaut import ASTRONAUT_POINTS, EYES, MOUTH

from lipstream.avatar.face_rig import FaceRig, Pose
from lipstream.avatar.landmarks import mouth_opening
from lipstream.errors import InvalidInput

pytest.importorskip("skimage.data")


def outside(rig: FaceRig, shape: tuple[int, ...]) -> np.ndarray:
    """A mask of the pixels outside the region the animation may change."""
    x0, y0, x1, y1 = rig.box
    mask = np.ones(shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    return mask


def test_open_and_closed_mouths_differ_and_the_background_does_not(
    rig: FaceRig, portrait: np.ndarray
) -> None:
    closed, _ = rig.render(Pose(mouth=(0.0, 0.0, 0.0), head=(0.02, 0.05, 0.02)))
    wide, _ = rig.render(Pose(mouth=(0.9, 0.2, 0.0), head=(-0.02, -0.05, 0.0)))
    assert closed.shape == wide.shape == portrait.shape and closed.dtype == np.uint8
    diff = np.abs(closed.astype(int) - wide.astype(int))
    assert diff[MOUTH].mean() > 15
    keep = outside(rig, portrait.shape)
    assert keep.mean() > 0.7  # most of the picture is background
    assert np.array_equal(closed[keep], portrait[keep])
    assert np.array_equal(wide[keep], portrait[keep])
    # An open mouth shows a dark inside.
    gray_closed = cv2.cvtColor(closed, cv2.COLOR_BGR2GRAY)[MOUTH]
    gray_wide = cv2.cvtColor(wide, cv2.COLOR_BGR2GRAY)[MOUTH]
    assert (gray_wide < 70).sum() > (gray_closed < 70).sum() + 100


def test_rest_pose_keeps_the_photo_except_the_mouth(rig: FaceRig, portrait: np.ndarray) -> None:
    rest, _ = rig.render(Pose())
    diff = np.abs(rest.astype(int) - portrait.astype(int)).sum(axis=2)
    changed_rows, _ = np.nonzero(diff > 24)
    # Closing the photo's parted lips moves the mouth, cheeks and chin, nothing from the eyes up.
    assert changed_rows.min() > EYES[0].stop
    assert np.abs(rest[EYES].astype(int) - portrait[EYES].astype(int)).mean() < 0.2


def test_moved_landmarks_measure_the_opening(rig: FaceRig) -> None:
    openings = [mouth_opening(rig.render(Pose(mouth=(o, 0, 0)))[1]) for o in (0, 0.3, 0.6, 1)]
    assert openings[0] == pytest.approx(0.0, abs=1e-6)
    assert openings == sorted(openings) and openings[-1] > 0.25


def test_spread_and_round_change_the_mouth_width(rig: FaceRig) -> None:
    def width(mouth: tuple[float, float, float]) -> float:
        points = rig.render(Pose(mouth=mouth))[1]
        return float(points[54, 0] - points[48, 0])

    assert width((0.2, 1.0, 0.0)) > width((0.2, 0.0, 0.0)) + 4
    assert width((0.2, 0.0, 1.0)) < width((0.2, 0.0, 0.0)) - 6


def test_a_face_outside_the_photo_is_refused(portrait: np.ndarray) -> None:
    shifted = ASTRONAUT_POINTS + (0, 400)
    with pytest.raises(InvalidInput, match="outside the 512x512 photo"):
        FaceRig.build(portrait, shifted)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (ASTRONAUT_POINTS[:60], "68 finite"),
        ((ASTRONAUT_POINTS - 220) * 0.2 + 220, "too small"),
        (ASTRONAUT_POINTS * (1, -1) + (0, 300), "upside down"),
    ],
)
def test_bad_landmarks_are_refused(portrait: np.ndarray, points: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        FaceRig.build(portrait, points)


def test_a_grey_photo_is_refused() -> None:
    with pytest.raises(InvalidInput, match="BGR"):
        FaceRig.build(np.zeros((64, 64), np.uint8), ASTRONAUT_POINTS)
