"""The feature timeline: streaming gives the offline frames, each as early as its audio allows,
for SyncTalk_2D's feature layout and the low-latency ones."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio import (
    AudioChunk,
    StreamingFeatureExtractor,
    float_to_pcm16,
    offline_features,
    resample,
)
from lipstream.audio import timeline as tl
from lipstream.audio.features import segment_features
from lipstream.errors import InvalidInput

samples_needed = tl.SYNCTALK2D.samples_needed
LOW_LATENCY = [tl.FeatureLayout(13, 2, "frame_end"), tl.FeatureLayout(15, 0, "frame_end")]


def _chunks(x, sizes):
    """``x`` in pieces of the given sizes (cycled), with where each piece ends."""
    sizes, i, c = list(sizes), 0, 0
    while i < len(x):
        n = int(sizes[c % len(sizes)])
        yield x[i : i + n], min(i + n, len(x))
        i, c = i + n, c + 1


def _stream(extractor, x, sizes):
    """Push x in chunks of the given sizes (cycled), then flush; frames and when they came out."""
    frames, emitted_at = [], {}
    for piece, received in _chunks(x, sizes):
        out = extractor.push(piece)
        for f in out:
            emitted_at[f.frame_index] = received
        frames += out
    frames += extractor.flush()
    assert [f.frame_index for f in frames] == list(range(len(frames)))
    return np.stack([f.features for f in frames]) if frames else np.zeros(
        (0, 32, 16, 16)
    ), emitted_at


@pytest.fixture(scope="module")
def offline_stub(speech, stub_encode):
    return offline_features(speech, stub_encode)


def test_offline_gives_one_frame_per_40_ms(speech, stub_encode, offline_stub):
    assert offline_stub.shape == (-(-len(speech) // 640), 32, 16, 16)
    assert offline_stub.dtype == np.float32


@pytest.mark.parametrize("sizes", [[7], [333], [640], [4001], [1, 2000, 13, 640, 5000, 3]])
def test_streaming_equals_offline_for_any_chunking(speech, stub_encode, offline_stub, sizes):
    streamed, _ = _stream(StreamingFeatureExtractor(stub_encode), speech, sizes)
    np.testing.assert_allclose(streamed, offline_stub, rtol=1e-5, atol=1e-5)


def test_streaming_equals_offline_with_the_audio_encoder_network(speech, torch_encode):
    offline = offline_features(speech, torch_encode)
    sizes = np.random.default_rng(11).integers(1, 3000, 500)
    streamed, _ = _stream(StreamingFeatureExtractor(torch_encode), speech, sizes)
    np.testing.assert_allclose(streamed, offline, rtol=1e-5, atol=1e-5)


def test_sample_by_sample_stream_emits_each_frame_the_moment_its_audio_arrives(
    speech, stub_encode, offline_stub
):
    prefix = speech[: 640 * 20]  # 0.8 s keeps one-sample pushes quick
    streamed, emitted_at = _stream(StreamingFeatureExtractor(stub_encode), prefix, [1])
    ready_while_streaming = tl.SYNCTALK2D.frames_ready(len(prefix))
    assert ready_while_streaming == 9
    for k in range(ready_while_streaming):
        assert emitted_at[k] == samples_needed(k)
    # the end of this prefix is followed by silence, not by the rest of the speech
    np.testing.assert_allclose(streamed[:9], offline_stub[:9], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(streamed, offline_features(prefix, stub_encode), atol=1e-5)


def test_frames_come_out_in_the_push_that_completes_their_audio(speech, stub_encode):
    sizes = np.random.default_rng(5).integers(1, 2500, 400)
    _, emitted_at = _stream(StreamingFeatureExtractor(stub_encode), speech, sizes)
    bounds = np.cumsum(np.concatenate([[0], sizes]))
    for k, received in emitted_at.items():
        assert received >= samples_needed(k)  # never before its audio exists
        previous_push_end = bounds[np.searchsorted(bounds, received) - 1]
        assert previous_push_end < samples_needed(k)  # and not one push later


def test_encoder_sees_synctalk2d_windows(speech_npz, stub_encode):
    seen = []

    def recording_encode(windows):
        seen.append(windows.copy())
        return stub_encode(windows)

    extractor = StreamingFeatureExtractor(recording_encode)
    for i in range(0, 16000, 500):  # window 19 reads mel frames 60..75: 15400 samples
        extractor.push(speech_npz["pcm"][i : i + 500])
    windows = np.concatenate(seen)[:20, 0]
    assert [tl.SYNCTALK2D.window_start(j) for j in range(20)] == list(
        speech_npz["window_start_mel_frame"]
    )
    np.testing.assert_allclose(windows, speech_npz["windows"], rtol=0, atol=1e-4)


def test_rows_before_the_start_are_zero_and_row_0_repeats(speech, stub_encode):
    first = offline_features(speech[:640], stub_encode)[0].reshape(16, 512)
    assert first.shape == (16, 512)
    assert not first[:8].any()  # rows -8..-1
    np.testing.assert_array_equal(first[8], first[9])  # rows 0 and 1 are both E[0]
    assert first[10:].any()


@pytest.mark.parametrize("n", [0, 1, 639, 640, 641, 7200, 7201])
def test_flush_completes_one_frame_per_started_40_ms(stub_encode, n):
    x = (np.random.default_rng(n).standard_normal(n) * 3000).astype(np.int16)
    extractor = StreamingFeatureExtractor(stub_encode)
    early = extractor.push(x)
    late = extractor.flush()
    assert len(early) == tl.SYNCTALK2D.frames_ready(n)
    assert [f.frame_index for f in early + late] == list(range(tl.frame_count(n)))


def test_reset_drops_everything_and_restarts_at_frame_0(speech, stub_encode, offline_stub):
    extractor = StreamingFeatureExtractor(stub_encode)
    assert extractor.push(speech[:20000])  # half an utterance, interrupted
    extractor.reset()
    assert extractor.next_frame == 0 and extractor.samples_received == 0
    streamed, _ = _stream(extractor, speech, [3000])
    np.testing.assert_allclose(streamed, offline_stub, rtol=1e-5, atol=1e-5)
    # flush also ends the stream: the next utterance starts at frame 0 again
    again, _ = _stream(extractor, speech, [3000])
    np.testing.assert_allclose(again, offline_stub, rtol=1e-5, atol=1e-5)


def test_24khz_stream_equals_resampling_first(speech, stub_encode):
    pcm24 = float_to_pcm16(resample(speech, 16000, 24000))
    offline = offline_features(resample(pcm24, 24000), stub_encode)
    sizes = [480, 1, 7, 2399, 4800, 333]  # 20 ms browser chunks and odd ones
    extractor = StreamingFeatureExtractor(stub_encode, sample_rate=24000)
    chunks = []
    i = 0
    while i < len(pcm24):
        n = sizes[len(chunks) % len(sizes)]
        chunks.append(AudioChunk(pcm24[i : i + n], 24000))
        i += n
    frames = [f for c in chunks for f in extractor.push(c)] + extractor.flush()
    assert [f.frame_index for f in frames] == list(range(len(offline)))
    np.testing.assert_allclose(
        np.stack([f.features for f in frames]), offline, rtol=1e-5, atol=1e-5
    )
    assert 0 < extractor.resampler_latency_s < 0.025


def test_memory_stays_bounded_on_a_long_stream(stub_encode):
    extractor = StreamingFeatureExtractor(stub_encode, sample_rate=24000)
    rng = np.random.default_rng(2)
    held, emitted = [], 0
    for _ in range(150):  # 150 x 0.2 s = 30 s
        emitted += len(extractor.push((rng.standard_normal(4800) * 2000).astype(np.int16)))
        held.append(extractor.held_bytes)
    assert emitted > 700
    assert max(held[75:]) <= max(held[:10]) + 4096  # no growth with the stream's length
    assert max(held) < 200_000


def test_bad_input_is_refused_with_the_reason(stub_encode):
    extractor = StreamingFeatureExtractor(stub_encode)
    with pytest.raises(InvalidInput, match="48000 Hz but this extractor was made for 16000 Hz"):
        extractor.push(AudioChunk(np.zeros(10, np.int16), 48000))
    with pytest.raises(InvalidInput, match="int16 PCM or float32/float64"):
        extractor.push(np.zeros(10, np.int32))
    with pytest.raises(InvalidInput, match="mono"):
        extractor.push(np.zeros((10, 2), np.int16))
    broken = StreamingFeatureExtractor(lambda w: np.zeros((len(w), 256), np.float32))
    with pytest.raises(InvalidInput, match=r"returned shape \(\d+, 256\).*expected"):
        broken.push(np.zeros(8000, np.int16))


@pytest.mark.parametrize("frame", [0, 1, 5, 9, 10, 11, 12, 13, 14, 37, 80])
def test_a_stream_resumed_from_a_piece_continues_with_the_same_frames(
    speech, stub_encode, offline_stub, frame
):
    start = max(tl.SYNCTALK2D.first_sample_needed(frame), 0)
    extractor = StreamingFeatureExtractor(stub_encode)
    # the piece a frame needs, then the rest of the stream in odd chunks
    piece_end = min(samples_needed(frame) + 333, len(speech))
    frames = extractor.resume(frame, speech[start:piece_end], start)
    rest = _stream_from(extractor, speech[piece_end:], [777, 1, 2048])
    frames += rest
    assert [f.frame_index for f in frames] == list(range(frame, len(offline_stub)))
    np.testing.assert_allclose(
        np.stack([f.features for f in frames]), offline_stub[frame:], rtol=1e-5, atol=1e-5
    )


def test_a_resumed_stream_may_start_earlier_than_needed(speech, stub_encode, offline_stub):
    extractor = StreamingFeatureExtractor(stub_encode)
    frames = extractor.resume(40, speech[1000:], 1000) + extractor.flush()
    assert frames[0].frame_index == 40
    np.testing.assert_allclose(
        np.stack([f.features for f in frames]), offline_stub[40:], rtol=1e-5, atol=1e-5
    )


def test_resume_refuses_audio_that_starts_too_late(speech, stub_encode):
    extractor = StreamingFeatureExtractor(stub_encode)
    oldest = tl.SYNCTALK2D.first_sample_needed(40)
    with pytest.raises(InvalidInput, match=f"frame 40 reads the stream from sample {oldest}"):
        extractor.resume(40, speech[oldest + 1 :], oldest + 1)
    with pytest.raises(InvalidInput, match="ends at sample"):
        extractor.resume(40, speech[oldest : oldest + 10], oldest - 100)
    with pytest.raises(InvalidInput, match="16000 Hz"):
        StreamingFeatureExtractor(stub_encode, sample_rate=24000).resume(0, speech, 0)


@pytest.mark.parametrize("layout", LOW_LATENCY, ids=lambda layout: f"after{layout.rows_after}")
def test_low_latency_layouts_stream_resume_and_segment_as_offline(speech, stub_encode, layout):
    offline = offline_features(speech, stub_encode, layout)
    assert offline.shape == (-(-len(speech) // 640), 32, 16, 16)
    for sizes in ([333], [1, 2000, 13, 640, 5000, 3]):
        streamed, emitted_at = _stream(
            StreamingFeatureExtractor(stub_encode, layout=layout), speech, sizes
        )
        np.testing.assert_allclose(streamed, offline, rtol=1e-5, atol=1e-5)
        bounds = np.cumsum(np.concatenate([[0], sizes * (len(speech) // sum(sizes) + 1)]))
        for k, received in emitted_at.items():  # each frame as soon as its audio is there
            assert received >= layout.samples_needed(k)
            assert bounds[np.searchsorted(bounds, received) - 1] < layout.samples_needed(k)
    # frame 0 waits only for 65 ms (+ 80 ms per row after it), not 450
    assert layout.samples_needed(0) <= 16 * layout.lookahead_ms
    for frame in (0, 3, 14, 15, 16, 37, 80):
        start = max(layout.first_sample_needed(frame), 0)
        extractor = StreamingFeatureExtractor(stub_encode, layout=layout)
        piece_end = min(layout.samples_needed(frame) + 333, len(speech))
        frames = extractor.resume(frame, speech[start:piece_end], start)
        frames += _stream_from(extractor, speech[piece_end:], [777, 1, 2048])
        assert [f.frame_index for f in frames] == list(range(frame, len(offline)))
        np.testing.assert_allclose(
            np.stack([f.features for f in frames]), offline[frame:], rtol=1e-5, atol=1e-5
        )
        segment = segment_features(speech[start:], start, frame, 4, stub_encode, layout)
        np.testing.assert_allclose(segment, offline[frame : frame + 4], rtol=1e-5, atol=1e-5)


def test_low_latency_windows_before_the_start_read_silence(stub_encode):
    layout = LOW_LATENCY[1]  # no rows after: window 0 is mel frames -12..3
    seen = []

    def recording_encode(windows):
        seen.append(windows.copy())
        return stub_encode(windows)

    StreamingFeatureExtractor(recording_encode, layout=layout).push(
        (np.random.default_rng(1).standard_normal(1000) * 3000).astype(np.int16)
    )
    first = np.concatenate(seen)[0, 0]  # [80, 16]
    assert np.all(first[:, :12] == -4.0)  # the mel of silence
    assert not np.all(first[:, 12:] == -4.0)


def _stream_from(extractor, x, sizes):
    """Push x in chunks of the given sizes (cycled), then flush; the frames."""
    return [f for piece, _ in _chunks(x, sizes) for f in extractor.push(piece)] + extractor.flush()
