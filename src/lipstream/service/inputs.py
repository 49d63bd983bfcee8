"""A GenerateBatchInference request turned into checked frames and their audio features.

The audio maps to frames as ``lipsync.proto`` says: the audio is a stretch of one utterance
starting at utterance sample ``audio_start_sample`` (at the audio's own rate); response ``i`` is
utterance frame ``first_frame_index + i``, drawn on avatar frame ``frame_ids[i]``. Audio outside
the stretch is silence. The cheap checks run when the request arrives; decoding, resampling and
the features run later, on the batcher's worker (``FrameRequest.features``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.features import Encoder, segment_features
from lipstream.audio.pcm import decode_pcm16, decode_pcm16_base64, validate_sample_rate
from lipstream.audio.resample import resample
from lipstream.errors import InvalidInput
from lipstream.service import lipsync_pb2

MAX_FRAMES_PER_REQUEST = 64
MAX_AUDIO_SECONDS = 30.0
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class FrameRequest:
    """A checked request: which avatar frames to draw, and the audio stretch they come from."""

    model_name: str
    frame_ids: tuple[int, ...]
    first_frame_index: int  # utterance frame of frame_ids[0]
    audio: bytes | str | None  # raw PCM16 bytes, base64 text of them, or None (silence)
    sample_rate: int  # of the audio
    audio_start_sample: int  # utterance sample of the audio's first sample, at sample_rate
    session_id: str = ""
    layout: tl.FeatureLayout = tl.SYNCTALK2D  # the model's feature layout

    @property
    def audio_field(self) -> str:
        """The request field the audio came from, for error messages."""
        return "audio_override" if isinstance(self.audio, str) else "audio_pcm"

    @property
    def start_sample_16k(self) -> int:
        """``audio_start_sample`` on the 16 kHz feature timeline (a whole sample, checked)."""
        return self.audio_start_sample * tl.SAMPLE_RATE // self.sample_rate

    @classmethod
    def from_message(
        cls,
        request: lipsync_pb2.BatchInferenceRequest,
        *,
        frame_count: int,
        default_sample_rate: int,
        layout: tl.FeatureLayout = tl.SYNCTALK2D,
    ) -> FrameRequest:
        """Check a ``BatchInferenceRequest`` against a model of ``frame_count`` avatar frames.

        ``default_sample_rate`` (the service's AUDIO_SAMPLE_RATE) applies when the request's
        ``audio_sample_rate`` is 0. Raises InvalidInput naming the field and what is accepted.
        """
        name: str = request.model_name
        ids = check_frames(name, request.frame_ids, request.first_frame_index, frame_count)
        first: int = request.first_frame_index
        start: int = request.audio_start_sample
        if start < 0:
            raise InvalidInput(f"audio_start_sample must be 0 or more, got {start}")
        rate: int = request.audio_sample_rate or default_sample_rate
        try:
            rate = validate_sample_rate(rate)
        except InvalidInput as exc:
            raise InvalidInput(f"audio_sample_rate: {exc}") from None
        if (start * tl.SAMPLE_RATE) % rate:
            step = rate // gcd(rate, tl.SAMPLE_RATE)
            raise InvalidInput(
                f"audio_start_sample {start} at {rate} Hz is not a whole 16 kHz sample; at "
                f"{rate} Hz it must be a multiple of {step}"
            )
        # the oldest sample the first frame reads (silence before the utterance start)
        oldest16 = max(layout.first_sample_needed(first), 0)
        if start * tl.SAMPLE_RATE // rate > oldest16:
            raise InvalidInput(
                f"audio_start_sample {start} is too late: frame {first} (first_frame_index) "
                f"reads the utterance's audio from sample {oldest16 * rate // tl.SAMPLE_RATE} "
                f"on at {rate} Hz ({oldest16} at 16 kHz); start the audio there or earlier"
            )

        audio: bytes | str | None = None
        if request.audio_pcm:
            audio = bytes(request.audio_pcm)
            if len(audio) % 2:
                raise InvalidInput(
                    f"audio_pcm holds an odd number of bytes ({len(audio)}): it must be 16-bit "
                    "PCM (mono, little-endian, 2 bytes per sample)"
                )
            _check_duration("audio_pcm", len(audio), rate)
        elif request.HasField("audio_override"):
            audio = str(request.audio_override)
            # base64 is decoded on the worker; its decoded size is at most 3/4 of its length
            _check_duration("audio_override", len(audio) * 3 // 4, rate)
        return cls(
            model_name=name,
            frame_ids=ids,
            first_frame_index=first,
            audio=audio,
            sample_rate=rate,
            audio_start_sample=start,
            session_id=str(request.session_id),
            layout=layout,
        )

    def pcm16k(self) -> np.ndarray:
        """The audio as 16 kHz float samples (decoded and resampled); empty without audio."""
        if self.audio is None:
            return np.zeros(0, np.float32)
        return decode_audio(self.audio, self.sample_rate, self.audio_field)

    def features(self, encode: Encoder) -> np.ndarray:
        """The generator's audio input for each frame: float32 [N, 32, 16, 16].

        Equal to the same frames of the features of the whole utterance at 16 kHz; audio at
        another rate is resampled on its own, which changes them only by the resampler's edge
        at the start of the stretch (where the first frame's window tapers off).
        """
        return segment_features(
            self.pcm16k(),
            self.start_sample_16k,
            self.first_frame_index,
            len(self.frame_ids),
            encode,
            self.layout,
        )


def check_frames(
    model_name: str, frame_ids, first_frame_index: int, frame_count: int
) -> tuple[int, ...]:
    """The avatar frames of a request, checked against a model of ``frame_count`` frames.

    Raises InvalidInput naming the field and what is accepted.
    """
    ids = tuple(int(i) for i in frame_ids)
    if not ids:
        raise InvalidInput(
            f"frame_ids is empty: list the avatar frames to draw, 0..{frame_count - 1}"
        )
    if len(ids) > MAX_FRAMES_PER_REQUEST:
        raise InvalidInput(
            f"frame_ids holds {len(ids)} frames; at most {MAX_FRAMES_PER_REQUEST} are "
            "accepted per request (split the request)"
        )
    for i, frame_id in enumerate(ids):
        if not 0 <= frame_id < frame_count:
            raise InvalidInput(
                f"frame_ids[{i}] = {frame_id} is out of range: model {model_name} has avatar "
                f"frames 0..{frame_count - 1}"
            )
    if first_frame_index < 0:
        raise InvalidInput(f"first_frame_index must be 0 or more, got {first_frame_index}")
    if first_frame_index + len(ids) - 1 > _INT32_MAX:
        raise InvalidInput(
            f"first_frame_index {first_frame_index} is too large: frame indices must stay "
            "below 2^31"
        )
    return ids


def decode_audio(audio: bytes | str, sample_rate: int, field: str) -> np.ndarray:
    """PCM16 mono little-endian audio (raw bytes, or base64 text) as 16 kHz float samples.

    InvalidInput names ``field`` (the request field the audio came in).
    """
    try:
        if isinstance(audio, str):
            chunk = decode_pcm16_base64(audio, sample_rate)
        else:
            chunk = decode_pcm16(audio, sample_rate)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc}") from None
    if chunk.sample_rate == tl.SAMPLE_RATE:
        return chunk.to_float()
    return resample(chunk, chunk.sample_rate)


def _check_duration(field: str, size: int, rate: int) -> None:
    seconds = size / 2 / rate
    if seconds > MAX_AUDIO_SECONDS:
        raise InvalidInput(
            f"{field} holds {seconds:.1f} s of audio at {rate} Hz; at most "
            f"{MAX_AUDIO_SECONDS:g} s are accepted per request (send the stretch the frames "
            "need, with audio_start_sample)"
        )
