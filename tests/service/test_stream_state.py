"""A stream's utterance in the service: audio sent once in pieces gives the offline features."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio import offline_features
from lipstream.audio import timeline as tl
from lipstream.errors import InvalidInput
from lipstream.service.stream_state import (
    MAX_UTTERANCES,
    AudioMissing,
    StreamState,
    UtteranceFeatures,
)

SYNC = tl.SYNCTALK2D


def encoder(seed: int):
    weights = np.random.default_rng(seed).standard_normal((80 * 16, 512)).astype(np.float32) / 40
    calls = []

    def encode(windows: np.ndarray) -> np.ndarray:
        calls.append(len(windows))
        return np.tanh(windows.reshape(len(windows), -1) @ weights)

    encode.calls = calls  # type: ignore[attr-defined]
    return encode


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3.2 s of a voice-like signal: a gliding tone with a syllable envelope, float at 16 kHz."""
    t = np.arange(int(3.2 * tl.SAMPLE_RATE)) / tl.SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * (150 + 60 * t) * t)).astype(np.float32)


def jobs(n_frames: int, size: int = 5):
    return [(k, min(size, n_frames - k)) for k in range(0, n_frames, size)]


def test_audio_sent_once_in_pieces_gives_the_offline_features(speech):
    encode = encoder(1)
    offline = offline_features(speech, encode)
    encode.calls.clear()
    utt = UtteranceFeatures()
    sent = 0
    for first, count in jobs(len(offline)):
        end = min(SYNC.samples_needed(first + count - 1), len(speech))
        utt.add_audio(sent, speech[sent:end])  # only what was not sent before
        sent = end
        if sent == len(speech):
            utt.end(len(speech))
        got = utt.features(encode, first, count)
        np.testing.assert_allclose(got, offline[first : first + count], rtol=1e-5, atol=1e-5)
    # every encoder window was computed once (plus the flush's last ones)
    assert sum(encode.calls) <= SYNC.last_window(len(offline) - 1) + 2
    first, end = utt.held_samples
    assert end - first <= 2 * tl.SAMPLE_RATE  # the audio behind the frames is let go


@pytest.mark.parametrize("layout", [tl.FeatureLayout(13, 2, "frame_end")])
def test_a_low_latency_model_gets_its_layouts_features_from_the_same_stream(speech, layout):
    encode = encoder(1)
    offline = offline_features(speech, encode, layout)
    synctalk = offline_features(speech, encode)
    utt = UtteranceFeatures()
    sent = 0
    for first, count in jobs(len(offline)):
        # the low-latency model asks for frames with far less audio sent
        end = min(layout.samples_needed(first + count - 1), len(speech))
        assert end < SYNC.samples_needed(first + count - 1)
        utt.add_audio(sent, speech[sent:end])
        sent = end
        if sent == len(speech):
            utt.end(len(speech))
        got = utt.features(encode, first, count, layout)
        np.testing.assert_allclose(got, offline[first : first + count], rtol=1e-5, atol=1e-5)
    # a SyncTalk_2D model of the same stream resumes from the audio held, in its own layout
    got = utt.features(encode, len(offline) - 5, 5)
    np.testing.assert_allclose(got, synctalk[-5:], rtol=1e-5, atol=1e-5)


def test_another_model_resumes_from_the_audio_held(speech):
    a, b = encoder(1), encoder(2)
    offline_a, offline_b = offline_features(speech, a), offline_features(speech, b)
    utt = UtteranceFeatures()
    utt.add_audio(0, speech)
    utt.end(len(speech))
    np.testing.assert_allclose(utt.features(a, 0, 30), offline_a[:30], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(utt.features(b, 30, 5), offline_b[30:35], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(utt.features(a, 35, 5), offline_a[35:40], rtol=1e-5, atol=1e-5)


def test_a_request_behind_the_stream_is_made_again_from_the_second_held(speech):
    encode = encoder(3)
    offline = offline_features(speech, encode)
    utt = UtteranceFeatures()
    utt.add_audio(0, speech[: SYNC.samples_needed(19)])
    utt.features(encode, 10, 10)  # frames 10..19 arrived first
    again = utt.features(encode, 5, 5)  # frames 5..9 after them (a retry on a new stream)
    np.testing.assert_allclose(again, offline[5:10], rtol=1e-5, atol=1e-5)


def test_a_stream_reopened_elsewhere_continues_from_a_second_of_audio(speech):
    encode = encoder(4)
    offline = offline_features(speech, encode)
    first = 40
    start = max(SYNC.first_sample_needed(first), 0)
    fresh = UtteranceFeatures()  # another instance: it never saw the utterance's start
    fresh.add_audio(start, speech[start : SYNC.samples_needed(first + 4)])
    assert SYNC.samples_needed(first) - start < tl.SAMPLE_RATE  # a frame reads under a second
    np.testing.assert_allclose(
        fresh.features(encode, first, 5), offline[first : first + 5], rtol=1e-5, atol=1e-5
    )


def test_missing_audio_is_named_and_a_fresh_piece_replaces_what_was_held(speech):
    encode = encoder(5)
    offline = offline_features(speech, encode)
    utt = UtteranceFeatures()
    utt.add_audio(20000, speech[20000:30000])
    with pytest.raises(AudioMissing, match=r"frame 3 reads the utterance's audio from sample 0"):
        utt.features(encode, 3, 2)
    with pytest.raises(AudioMissing, match=r"frame 40 needs the utterance's audio up to sample"):
        utt.add_audio(0, speech[:20000])  # touches what is held: extends it
        utt.features(encode, 20, 21)
    utt.add_audio(40000, speech[40000:45000])  # apart from what is held: replaces it
    assert utt.held_samples == (40000, 45000)
    utt.add_audio(0, speech[:30000])
    np.testing.assert_allclose(utt.features(encode, 3, 2), offline[3:5], rtol=1e-5, atol=1e-5)


def test_the_end_continues_with_silence_as_far_as_frames_are_asked(speech):
    encode = encoder(6)
    clip = speech[:10000]  # 15.6 frames: 16 frames
    offline = offline_features(clip, encode)
    utt = UtteranceFeatures()
    utt.add_audio(0, clip)
    utt.end(len(clip))
    got = utt.features(encode, 0, 16)
    np.testing.assert_allclose(got, offline, rtol=1e-5, atol=1e-5)
    assert utt.features(encode, 16, 1).shape == (1, 32, 16, 16)  # past the end: silence


def test_bounds_and_bad_input(speech):
    utt = UtteranceFeatures()
    with pytest.raises(InvalidInput, match="at most 10 s are held"):
        utt.add_audio(0, np.zeros(11 * tl.SAMPLE_RATE, np.float32))
    with pytest.raises(InvalidInput, match="start_sample must be 0 or more"):
        utt.add_audio(-1, speech[:10])
    with pytest.raises(InvalidInput, match="total_samples must be 0 or more"):
        utt.end(-5)
    with pytest.raises(InvalidInput, match="frames count from 0"):
        utt.features(encoder(1), -1, 2)
    state = StreamState()
    for number in range(1, MAX_UTTERANCES + 3):
        state.utterance(number).add_audio(0, speech[:100])
    assert len(state) == MAX_UTTERANCES
    state.clear()
    assert len(state) == 0


def test_frames_far_past_the_end_are_refused_without_computing_them(speech):
    encode = encoder(7)
    utt = UtteranceFeatures()
    utt.add_audio(0, speech[:10000])
    utt.end(10000)
    encode.calls.clear()
    with pytest.raises(InvalidInput, match="past the end of its utterance, which has 16 frames"):
        utt.features(encode, 20000, 1)
    assert encode.calls == []


def test_a_piece_that_replaces_the_audio_gives_the_right_frames(speech):
    encode = encoder(8)
    offline = offline_features(speech, encode)
    utt = UtteranceFeatures()
    utt.add_audio(0, speech[: SYNC.samples_needed(20)])
    utt.features(encode, 0, 10)  # frames 10.. wait in the extractor
    start = max(SYNC.first_sample_needed(60), 0)
    utt.add_audio(start, speech[start : SYNC.samples_needed(64)])  # the client started over
    np.testing.assert_allclose(utt.features(encode, 60, 5), offline[60:65], rtol=1e-5, atol=1e-5)


def test_an_encoder_failure_costs_one_request_not_the_utterance(speech):
    good = encoder(9)
    offline = offline_features(speech, good)
    failing = {"now": False}

    def flaky(windows):
        if failing["now"]:
            raise RuntimeError("out of memory")
        return good(windows)

    utt = UtteranceFeatures()
    utt.add_audio(0, speech)
    np.testing.assert_allclose(utt.features(flaky, 0, 5), offline[:5], rtol=1e-5, atol=1e-5)
    failing["now"] = True
    with pytest.raises(RuntimeError):
        utt.features(flaky, 5, 5)
    failing["now"] = False
    np.testing.assert_allclose(utt.features(flaky, 5, 5), offline[5:10], rtol=1e-5, atol=1e-5)


def test_audio_that_ends_where_a_frame_starts_reading_is_missing_audio(speech):
    utt = UtteranceFeatures()
    needed = SYNC.first_sample_needed(40)
    utt.add_audio(0, speech[:needed])
    with pytest.raises(AudioMissing):
        utt.features(encoder(10), 40, 1)
