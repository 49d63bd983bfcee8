"""Typed audio chunks and decoding of raw PCM16 (bytes or base64) with clear errors."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from lipstream.errors import InvalidInput

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
_PCM16_SCALE = 32768.0
_ACCEPTED = "raw PCM16: mono, 16-bit signed little-endian, 8000..192000 Hz"


def validate_sample_rate(sample_rate: object) -> int:
    """Return ``sample_rate`` as an int, or raise InvalidInput unless it is 8000..192000 Hz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise InvalidInput(
            f"sample_rate must be an integer number of Hz, got {sample_rate!r} "
            f"(accepted: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})"
        )
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidInput(
            f"unsupported sample_rate {rate} Hz (accepted: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE})"
        )
    return rate


def _require_mono(samples: np.ndarray, what: str) -> None:
    if samples.ndim != 1:
        raise InvalidInput(
            f"{what} must be mono, a 1-D array of samples; got shape {samples.shape} "
            "(mix channels down to one before sending)"
        )


def pcm16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1) (sample / 32768, as librosa and SyncTalk_2D load WAVs)."""
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise InvalidInput(f"expected int16 PCM samples, got dtype {samples.dtype}")
    return samples.astype(np.float32) / np.float32(_PCM16_SCALE)


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 PCM (x * 32768, rounded, clipped); inverse of the above."""
    samples = np.asarray(samples)
    if samples.dtype.kind != "f":
        raise InvalidInput(f"expected float samples in [-1, 1], got dtype {samples.dtype}")
    if not np.all(np.isfinite(samples)):
        raise InvalidInput("float audio contains NaN or infinity")
    scaled = np.rint(samples.astype(np.float64) * _PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """A piece of mono PCM16 audio that knows its sample rate."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = self.samples
        if not isinstance(samples, np.ndarray):
            raise InvalidInput(f"samples must be a numpy int16 array, got {type(samples).__name__}")
        _require_mono(samples, "audio")
        if samples.dtype != np.int16:
            hint = (
                "convert float audio in [-1, 1] with AudioChunk.from_float()"
                if samples.dtype.kind == "f"
                else "convert it explicitly with .astype(np.int16) if the values fit"
            )
            raise InvalidInput(f"samples must be int16 PCM, got dtype {samples.dtype}; {hint}")
        object.__setattr__(self, "sample_rate", validate_sample_rate(self.sample_rate))

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self) / self.sample_rate

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, sample_rate: int) -> AudioChunk:
        """Decode raw PCM16 little-endian bytes."""
        return decode_pcm16(data, sample_rate)

    @classmethod
    def from_base64(cls, text: str | bytes, sample_rate: int) -> AudioChunk:
        """Decode base64-encoded raw PCM16 little-endian bytes."""
        return decode_pcm16_base64(text, sample_rate)

    @classmethod
    def from_float(cls, samples: np.ndarray, sample_rate: int) -> AudioChunk:
        """Build a chunk from mono float audio in [-1, 1]."""
        samples = np.asarray(samples)
        _require_mono(samples, "audio")
        return cls(float_to_pcm16(samples), sample_rate)

    def to_bytes(self) -> bytes:
        """Raw PCM16 little-endian bytes."""
        return self.samples.astype("<i2", copy=False).tobytes()

    def to_float(self) -> np.ndarray:
        """float32 samples in [-1, 1)."""
        return pcm16_to_float(self.samples)


def decode_pcm16(data: bytes | bytearray | memoryview, sample_rate: int) -> AudioChunk:
    """Decode raw PCM16 little-endian mono bytes into an AudioChunk."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"audio must be bytes of {_ACCEPTED}; got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) % 2:
        raise InvalidInput(
            f"audio has an odd number of bytes ({len(raw)}): not 16-bit PCM "
            f"(accepted: {_ACCEPTED}, 2 bytes per sample)"
        )
    rate = validate_sample_rate(sample_rate)
    # copy: frombuffer over bytes is read-only, and the chunk outlives the message buffer
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=True)
    return AudioChunk(samples, rate)


def decode_pcm16_base64(text: str | bytes, sample_rate: int) -> AudioChunk:
    """Decode base64 text holding raw PCM16 little-endian mono bytes into an AudioChunk."""
    if not isinstance(text, str | bytes):
        raise InvalidInput(
            f"audio must be a base64 string of {_ACCEPTED}; got {type(text).__name__}"
        )
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(
            f"audio is not valid base64 ({exc}); expected base64 of {_ACCEPTED}"
        ) from exc
    return decode_pcm16(raw, sample_rate)


def as_float_samples(audio: AudioChunk | np.ndarray, what: str = "audio") -> np.ndarray:
    """Mono samples as float64: int16 is scaled by 1/32768, float is taken as is."""
    samples = audio.samples if isinstance(audio, AudioChunk) else np.asarray(audio)
    _require_mono(samples, what)
    if samples.dtype == np.int16:
        return pcm16_to_float(samples).astype(np.float64)
    if samples.dtype in (np.float32, np.float64):
        return samples.astype(np.float64, copy=False)
    raise InvalidInput(
        f"{what} must be int16 PCM or float32/float64 in [-1, 1], got dtype {samples.dtype}"
    )


def av_frame(samples: np.ndarray, sample_rate: int, pts: int) -> av.AudioFrame:
    """PCM16 mono ``samples`` as a PyAV frame starting at sample ``pts`` (for encoders)."""
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.int16)[None, :], format="s16", layout="mono"
    )
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = Fraction(1, sample_rate)
    return frame
