"""Resampling to 16 kHz (libsoxr): streaming equals one-shot, timing is kept, nothing aliases."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio import AudioChunk, StreamingResampler, resample
from lipstream.errors import InvalidInput

RATES = [8000, 22050, 24000, 44100, 48000]


def _chunks(x: np.ndarray, sizes):
    i = 0
    for n in sizes:
        if i >= len(x):
            return
        yield x[i : i + n]
        i += n
    if i < len(x):
        yield x[i:]


def _tone(freq: float, rate: int, seconds: float = 0.5) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


@pytest.mark.parametrize("rate", RATES)
def test_streaming_in_any_chunks_equals_one_shot(rate):
    rng = np.random.default_rng(rate)
    x = rng.standard_normal(rate // 4) * 0.3
    whole = resample(x, rate)
    assert whole.dtype == np.float32
    assert len(whole) == -(-len(x) * 16000 // rate)
    sizes = [1, 7, 1, 333, 640, 4001] + list(rng.integers(1, 3000, 200))
    stream = StreamingResampler(rate)
    pieces = [stream.process(c) for c in _chunks(x, sizes)] + [stream.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=0, atol=1e-6)


def test_16k_is_a_pass_through():
    x = (np.random.default_rng(0).standard_normal(1000) * 3000).astype(np.int16)
    stream = StreamingResampler(16000)
    out = stream.process(x)
    np.testing.assert_array_equal(out, x / np.float32(32768))
    assert len(stream.flush()) == 0 and stream.latency_s == 0


@pytest.mark.parametrize("rate", RATES)
def test_output_sample_n_is_input_time_n_over_16000(rate):
    # the filter delay is compensated: a tone comes out in phase with the ideal 16 kHz tone
    out = resample(_tone(1000.0, rate), rate)
    ideal = np.sin(2 * np.pi * 1000.0 * np.arange(len(out)) / 16000)
    inner = slice(400, len(out) - 400)  # away from the abrupt start and end
    assert np.abs(out - ideal)[inner].max() < 1e-3


@pytest.mark.parametrize("rate", [22050, 24000, 44100, 48000])
def test_passband_is_flat_to_7000_hz_and_no_tone_above_8k_aliases(rate):
    inner = slice(400, -400)
    for freq in (3000.0, 7000.0):
        out = resample(_tone(freq, rate), rate)[inner]
        assert np.sqrt(2 * np.mean(out**2)) == pytest.approx(1.0, abs=2e-3)
    # libsoxr HQ (librosa's default, so SyncTalk_2D's training audio) rolls off above 7 kHz:
    # the top mel band (to 7600 Hz) keeps at least -3 dB
    out = resample(_tone(7600.0, rate), rate)[inner]
    assert np.sqrt(2 * np.mean(out**2)) > 0.7
    for freq in (8100.0, 9000.0, min(rate / 2 - 500, 15000.0)):
        out = resample(_tone(freq, rate), rate)[inner]
        assert np.sqrt(np.mean(out**2)) < 1e-3  # at least 60 dB down


@pytest.mark.parametrize("rate", RATES)
def test_streaming_latency_is_small_and_declared(rate):
    stream = StreamingResampler(rate)
    assert 0 < stream.latency_s < (0.07 if rate < 16000 else 0.025)
    produced = len(stream.process(np.zeros(rate)))  # one second in
    # every output up to 1 s - latency is out already
    assert produced == pytest.approx(16000 * (1 - stream.latency_s), abs=1)


def test_flush_ends_the_stream_and_starts_a_new_one():
    x = np.random.default_rng(1).standard_normal(5000)
    stream = StreamingResampler(24000)
    first = np.concatenate([stream.process(x), stream.flush()])
    second = np.concatenate([stream.process(x), stream.flush()])
    np.testing.assert_array_equal(first, second)


def test_int16_chunks_are_read_as_sample_over_32768():
    x = (_tone(440.0, 24000) * 20000).astype(np.int16)
    np.testing.assert_allclose(
        resample(AudioChunk(x, 24000), 24000), resample(x / 32768.0, 24000), atol=1e-7
    )


def test_chunk_at_another_rate_is_refused():
    with pytest.raises(InvalidInput, match="48000 Hz but this resampler expects 24000 Hz"):
        StreamingResampler(24000).process(AudioChunk(np.zeros(10, np.int16), 48000))


def test_unsupported_rate_is_refused():
    with pytest.raises(InvalidInput, match="8000..192000"):
        StreamingResampler(4000)
