"""The face landmark detector on a real portrait, and the 68-point crop box rule."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("dlib", reason="the face landmark detector needs dlib-bin")
skimage_data = pytest.importorskip(
    "skimage.data", reason="the test portrait comes with scikit-image"
)

from lipstream.avatar.landmarks import FaceLandmarker, detect, mouth_opening  # noqa: E402
from lipstream.errors import InvalidInput  # noqa: E402
from lipstream.geometry import crop_box_from_face68, face68_square, fit_square  # noqa: E402

# Where the astronaut's face lies in the 512x512 portrait (checked by eye): hairline to chin,
# ear to ear.
FACE_REGION = (170, 75, 285, 195)  # xmin, ymin, xmax, ymax


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The public-domain astronaut portrait, BGR."""
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def points(portrait: np.ndarray) -> np.ndarray:
    found = detect(portrait)
    assert found is not None, "no face found in the astronaut portrait"
    return found


def test_landmarks_land_on_the_face(points: np.ndarray) -> None:
    assert points.shape == (68, 2) and points.dtype == np.float32
    xmin, ymin, xmax, ymax = FACE_REGION
    assert np.all((points[:, 0] >= xmin) & (points[:, 0] <= xmax))
    assert np.all((points[:, 1] >= ymin) & (points[:, 1] <= ymax))
    # The iBUG order: the eyes above the nose tip, above the mouth, above the chin; the
    # subject's right eye (36-41) on the image's left.
    eyes_y = points[36:48, 1].max()
    nose_y = points[30, 1]
    mouth = points[48:68]
    assert eyes_y < nose_y < mouth[:, 1].min() < mouth[:, 1].max() < points[8, 1]
    assert points[36:42, 0].mean() < points[42:48, 0].mean()
    assert points[48, 0] < points[54, 0]


def test_crop_box_holds_mouth_and_chin_below_the_eyes(
    portrait: np.ndarray, points: np.ndarray
) -> None:
    box = crop_box_from_face68(points, portrait.shape[1], portrait.shape[0])
    assert box.width == box.height
    mouth = points[48:68]
    assert np.all((mouth[:, 0] > box.xmin) & (mouth[:, 0] < box.xmax))
    assert np.all((mouth[:, 1] > box.ymin) & (mouth[:, 1] < box.ymax))
    assert box.ymin < points[8, 1] < box.ymax  # the chin is inside
    assert points[36:48, 1].max() < box.ymin  # the eyes are not
    # The mouth is roughly centred left to right, as in SyncTalk_2D's crops.
    centre = (mouth[:, 0].mean() - box.xmin) / box.width
    assert 0.35 < centre < 0.65


def test_mouth_opening_is_scale_free(points: np.ndarray) -> None:
    opening = mouth_opening(points)
    assert 0.0 <= opening < 1.0
    assert mouth_opening(points * 3.0 + 17.0) == pytest.approx(opening, rel=1e-6)
    closed = points.copy()
    closed[65:68] = closed[[63, 62, 61]]  # lower inner lip onto the upper one
    assert mouth_opening(closed) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InvalidInput, match="68 face landmarks"):
        mouth_opening(points[:60])


def test_large_frames_are_searched_downscaled(portrait: np.ndarray, points: np.ndarray) -> None:
    big = cv2.resize(portrait, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    found = FaceLandmarker(max_side=640).detect(big)
    assert found is not None
    # Same face, three times the coordinates; the predictor sees the full-size frame.
    assert np.median(np.linalg.norm(found / 3 - points, axis=1)) < 3.0


def test_tracking_follows_the_face(portrait: np.ndarray, points: np.ndarray) -> None:
    tracker = FaceLandmarker()
    height, width = portrait.shape[:2]
    for step in range(5):
        dx, dy = 6 * step, -4 * step
        shifted = cv2.warpAffine(
            portrait,
            np.float32([[1, 0, dx], [0, 1, dy]]),
            (width, height),
            borderMode=cv2.BORDER_REPLICATE,
        )
        found = tracker.track(shifted)
        assert found is not None
        assert np.median(np.linalg.norm(found - (points + [dx, dy]), axis=1)) < 3.0


def test_no_face_gives_none() -> None:
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    assert detect(gradient) is None
    tracker = FaceLandmarker()
    assert tracker.track(gradient) is None


def test_bad_frames_are_refused() -> None:
    with pytest.raises(InvalidInput, match="uint8 BGR"):
        detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidInput, match="uint8 BGR"):
        detect(np.zeros((10, 10, 3), np.float32))


def test_boxes_are_moved_inside_the_frame_not_cut() -> None:
    box = fit_square(-20.4, 90.0, 100.0, 200, 150)
    assert box.as_list() == [0, 50, 100, 150]
    # Larger than the frame: shrinks to the short side around the same centre.
    box = fit_square(0.0, 0.0, 300.0, 400, 200)
    assert (box.width, box.height) == (200, 200) and box.as_list() == [50, 0, 250, 200]
    with pytest.raises(InvalidInput, match="68 finite face landmarks"):
        face68_square(np.zeros((53, 2)))


def test_a_face_like_pattern_larger_than_the_face_does_not_win(
    portrait: np.ndarray, points: np.ndarray, tmp_path
) -> None:
    # After H.264 the astronaut's suit also fires the detector, weakly, in a larger box.
    from lipstream.video import Mp4Writer, read_video_frames

    writer = Mp4Writer(tmp_path / "portrait.mp4", portrait.shape[1], portrait.shape[0])
    for _ in range(3):
        writer.write(portrait)
    writer.close()
    frame = list(read_video_frames(tmp_path / "portrait.mp4"))[1]
    found = FaceLandmarker().detect(frame)
    assert found is not None
    assert np.abs(found - points).mean() < 3.0
