"""Reading speech from audio files (any container FFmpeg reads) and writing PCM16 WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from lipstream.audio.pcm import AudioChunk
from lipstream.audio.resample import resample
from lipstream.errors import InvalidInput


def read_audio_file(path: str | Path, sample_rate: int | None = None) -> AudioChunk:
    """Decode a file's first audio stream to mono int16, at its own rate or ``sample_rate``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InvalidInput(f"{path} has no audio track")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            # FFmpeg mixes down to mono and converts to int16; the rate stays as recorded.
            mono = av.AudioResampler(format="s16", layout="mono", rate=rate)
            parts = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in mono.resample(frame)
            ]
            parts += [out.to_ndarray().reshape(-1) for out in mono.resample(None)]
    except av.FFmpegError as exc:
        raise InvalidInput(f"{path} is not a readable audio file: {exc}") from None
    samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    if not len(samples):
        raise InvalidInput(f"{path} holds no audio samples")
    chunk = AudioChunk(samples.astype(np.int16, copy=False), int(rate))
    if sample_rate is None or sample_rate == chunk.sample_rate:
        return chunk
    return AudioChunk.from_float(resample(chunk, chunk.sample_rate, sample_rate), sample_rate)


def write_wav(path: str | Path, audio: AudioChunk) -> None:
    """Write a mono PCM16 WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.sample_rate)
        out.writeframes(audio.to_bytes())
