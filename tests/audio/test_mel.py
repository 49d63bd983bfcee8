"""The mel front end reproduces SyncTalk_2D's, whole and frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio import StreamingMel, melspectrogram


def test_matches_synctalk2d_on_real_speech(speech_npz):
    mel = melspectrogram(speech_npz["pcm"])
    assert mel.shape == speech_npz["mel"].shape == (80, 1 + len(speech_npz["pcm"]) // 200)
    np.testing.assert_allclose(mel, speech_npz["mel"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(mel, speech_npz["mel_f64"], rtol=0, atol=1e-9)


def test_float_input_is_taken_as_is(speech_npz):
    np.testing.assert_allclose(
        melspectrogram(speech_npz["wav"]), speech_npz["mel_f64"], rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("n", [0, 1, 199, 200, 201, 16000])
def test_one_frame_per_200_samples_plus_one(n):
    mel = melspectrogram(np.zeros(n, dtype=np.int16))
    assert mel.shape == (80, 1 + n // 200)
    assert np.all(mel == -4.0)  # silence sits on the floor of the [-4, 4] range


def test_streaming_frames_equal_whole_signal_frames(speech):
    whole = melspectrogram(speech)
    stream, got = StreamingMel(), []
    rng = np.random.default_rng(3)
    i = 0
    while i < len(speech):
        n = int(rng.integers(1, 700))
        frames = stream.push(speech[i : i + n])
        i += n
        got.append(frames)
        # frame m is out exactly once samples up to 200m + 400 have arrived
        assert stream.next_frame == max(0, (min(i, len(speech)) - 400) // 200 + 1)
    streamed = np.concatenate(got, axis=1)
    # frames reaching past the end of the array differ: there the stream is not over yet
    complete = (len(speech) - 400) // 200 + 1
    np.testing.assert_allclose(streamed[:, :complete], whole[:, :complete], rtol=0, atol=1e-12)
