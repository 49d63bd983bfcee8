"""Reading speech files: any rate and channel count in, mono PCM16 out, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio.files import read_audio_file, write_wav
from lipstream.audio.pcm import AudioChunk
from lipstream.errors import InvalidInput


def test_wav_round_trip_keeps_samples_and_rate(tmp_path):
    samples = (np.sin(np.arange(24000) / 10) * 10000).astype(np.int16)
    write_wav(tmp_path / "a.wav", AudioChunk(samples, 24000))
    back = read_audio_file(tmp_path / "a.wav")
    assert back.sample_rate == 24000
    np.testing.assert_array_equal(back.samples, samples)


def test_reading_at_another_rate_resamples(tmp_path):
    tone = (np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 8000).astype(np.int16)
    write_wav(tmp_path / "tone.wav", AudioChunk(tone, 48000))
    back = read_audio_file(tmp_path / "tone.wav", sample_rate=16000)
    assert back.sample_rate == 16000
    assert len(back) == 16000
    spectrum = np.abs(np.fft.rfft(back.samples.astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 Hz bins over one second


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable audio file"), (b"RIFF1234WAVEjunkjunk", "not a readable audio file")],
)
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        read_audio_file(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidInput, match="audio file not found"):
        read_audio_file(tmp_path / "nope.wav")


def test_video_without_audio_track_is_named(tmp_path):
    from lipstream.video import Mp4Writer

    writer = Mp4Writer(tmp_path / "silent.mp4", 64, 48)
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.close()
    with pytest.raises(InvalidInput, match="has no audio track"):
        read_audio_file(tmp_path / "silent.mp4")
