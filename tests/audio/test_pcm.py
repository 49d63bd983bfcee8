"""Decoding PCM16 audio: what is accepted, and errors that say what went wrong."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from lipstream.audio import (
    AudioChunk,
    decode_pcm16,
    decode_pcm16_base64,
    float_to_pcm16,
    pcm16_to_float,
)
from lipstream.errors import InvalidInput


def test_bytes_are_little_endian_int16_and_know_their_duration():
    chunk = decode_pcm16(b"\x01\x00\xff\x7f\x00\x80" * 4000, 24000)
    assert chunk.samples.dtype == np.int16
    assert chunk.samples[:3].tolist() == [1, 32767, -32768]
    assert chunk.sample_rate == 24000
    assert len(chunk) == 12000
    assert chunk.duration == pytest.approx(0.5)
    assert chunk.to_bytes() == b"\x01\x00\xff\x7f\x00\x80" * 4000


def test_base64_round_trip():
    samples = np.arange(-500, 500, dtype=np.int16) * 60
    text = base64.b64encode(samples.astype("<i2").tobytes()).decode()
    chunk = AudioChunk.from_base64(text, 16000)
    np.testing.assert_array_equal(chunk.samples, samples)
    assert len(AudioChunk.from_bytes(b"", 16000)) == 0


def test_odd_byte_count_is_not_16_bit_pcm():
    with pytest.raises(InvalidInput, match=r"odd number of bytes \(1001\): not 16-bit PCM"):
        decode_pcm16(bytes(1001), 16000)


def test_invalid_base64_is_named():
    with pytest.raises(InvalidInput, match="not valid base64"):
        decode_pcm16_base64("this is not base64!", 16000)


@pytest.mark.parametrize("rate", [7999, 192001, 0, -16000, 16000.0, "16000", True])
def test_unsupported_sample_rates_name_the_accepted_range(rate):
    with pytest.raises(InvalidInput, match="8000..192000"):
        decode_pcm16(bytes(4), rate)


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000, 192000])
def test_supported_sample_rates(rate):
    assert decode_pcm16(bytes(4), rate).sample_rate == rate


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.uint8])
def test_wrong_dtype_is_refused_unless_converted(dtype):
    samples = np.zeros(10, dtype=dtype)
    with pytest.raises(InvalidInput, match=f"must be int16 PCM, got dtype {np.dtype(dtype)}"):
        AudioChunk(samples, 16000)
    if np.dtype(dtype).kind == "f":
        assert AudioChunk.from_float(samples, 16000).samples.dtype == np.int16


def test_non_mono_audio_is_refused():
    with pytest.raises(InvalidInput, match=r"mono.*\(100, 2\)"):
        AudioChunk(np.zeros((100, 2), dtype=np.int16), 16000)
    with pytest.raises(InvalidInput, match="mono"):
        AudioChunk.from_float(np.zeros((2, 100)), 16000)


def test_float_and_int16_convert_both_ways():
    every_value = np.arange(-32768, 32768, dtype=np.int16)
    as_float = pcm16_to_float(every_value)
    assert as_float.dtype == np.float32
    assert as_float.min() == -1.0 and as_float.max() < 1.0
    np.testing.assert_array_equal(float_to_pcm16(as_float), every_value)
    # out-of-range floats clip instead of wrapping around
    assert float_to_pcm16(np.array([1.5, 1.0, -1.0, -3.0])).tolist() == [32767] * 2 + [-32768] * 2


def test_float_conversion_refuses_nan_and_integers():
    with pytest.raises(InvalidInput, match="NaN"):
        float_to_pcm16(np.array([0.0, np.nan]))
    with pytest.raises(InvalidInput, match="float"):
        float_to_pcm16(np.zeros(3, dtype=np.int32))
    with pytest.raises(InvalidInput, match="int16"):
        pcm16_to_float(np.zeros(3, dtype=np.float32))
