"""The frame generator's WebSocket messages: every shape a client sends and every reply.

Sans-I/O, like python-websockets' own protocol layer: ``parse_message`` turns a client's JSON
text into one typed message (or raises ProtocolError, whose ``code`` goes into the ``error``
reply), and the reply functions build the JSON objects the server sends. Nothing here touches
a socket; the server (frames/server.py) only shuttles these between the socket and its
Session. See docs/frame-protocol.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from lipstream.audio.pcm import AudioChunk
from lipstream.audio.timeline import FPS
from lipstream.errors import InvalidInput
from lipstream.frames.session import MouthFrame
from lipstream.geometry import PREDICTION_SHAPE

# ------------------------------------------------------------------------- client messages


class ProtocolError(InvalidInput):
    """A message the frame generator cannot take; ``code`` is the error reply's code."""

    def __init__(self, code: str, message: str, request_type: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_type = request_type


@dataclass(frozen=True)
class AudioChunkMessage:
    """``audio_chunk``: base64 PCM16 at the session's rate (binary frames carry raw PCM16)."""

    TYPE: ClassVar[str] = "audio_chunk"

    audio_data: str

    def chunk(self, sample_rate: int) -> AudioChunk:
        try:
            return AudioChunk.from_base64(self.audio_data, sample_rate)
        except InvalidInput as exc:
            raise ProtocolError("bad_audio", str(exc), "audio_chunk") from None


@dataclass(frozen=True)
class GetFrame:
    """``get_frame``: the oldest finished frame, or the idle answer."""

    TYPE: ClassVar[str] = "get_frame"


@dataclass(frozen=True)
class SetModel:
    """``set_model``: frames planned from now on use ``model_name``."""

    TYPE: ClassVar[str] = "set_model"

    model_name: str


@dataclass(frozen=True)
class GetStats:
    """``get_stats``: the session's counters and timings."""

    TYPE: ClassVar[str] = "get_stats"


@dataclass(frozen=True)
class Configure:
    """``configure``: each field left out keeps its value."""

    TYPE: ClassVar[str] = "configure"

    push_frames: bool | None = None
    audio_sample_rate: int | None = None
    binary_frames: bool | None = None


@dataclass(frozen=True)
class EndOfSpeech:
    """``end_of_speech``: the utterance is over; its last frames are made with silence."""

    TYPE: ClassVar[str] = "end_of_speech"


@dataclass(frozen=True)
class Interrupt:
    """``interrupt``: drop queued audio, jobs in flight and finished frames (barge-in)."""

    TYPE: ClassVar[str] = "interrupt"


@dataclass(frozen=True)
class Ping:
    """``ping``: answered by ``pong`` echoing ``fields``."""

    TYPE: ClassVar[str] = "ping"

    fields: dict[str, Any]


ClientMessage = (
    AudioChunkMessage | GetFrame | SetModel | GetStats | Configure | EndOfSpeech | Interrupt | Ping
)


def _string_field(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise ProtocolError(
            "bad_field", f'{message["type"]} needs a non-empty string "{name}"', message["type"]
        )
    return value


def _optional_bool(message: dict[str, Any], name: str) -> bool | None:
    value = message.get(name)
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(
            "bad_field", f'"{name}" must be true or false, got {value!r}', message["type"]
        )
    return value


def _optional_int(message: dict[str, Any], name: str) -> int | None:
    value = message.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProtocolError(
            "bad_field", f'"{name}" must be an integer, got {value!r}', message["type"]
        )
    return value


def _audio_chunk(message: dict[str, Any]) -> AudioChunkMessage:
    data = message.get("audio_data")
    if not isinstance(data, str):
        raise ProtocolError(
            "bad_field", 'audio_chunk needs "audio_data": base64 PCM16 text', "audio_chunk"
        )
    return AudioChunkMessage(data)


def _configure(message: dict[str, Any]) -> Configure:
    push = _optional_bool(message, "push_frames")
    rate = _optional_int(message, "audio_sample_rate")
    return Configure(push, rate, _optional_bool(message, "binary_frames"))


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientMessage]] = {
    AudioChunkMessage.TYPE: _audio_chunk,
    GetFrame.TYPE: lambda m: GetFrame(),
    SetModel.TYPE: lambda m: SetModel(_string_field(m, "model_name")),
    GetStats.TYPE: lambda m: GetStats(),
    Configure.TYPE: _configure,
    EndOfSpeech.TYPE: lambda m: EndOfSpeech(),
    Interrupt.TYPE: lambda m: Interrupt(),
    Ping.TYPE: lambda m: Ping({k: v for k, v in m.items() if k != "type"}),
}
MESSAGE_TYPES = tuple(_PARSERS)


def parse_message(text: str) -> ClientMessage:
    """A client's JSON text message as its typed message."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"message is not valid JSON: {exc.msg}") from None
    if not isinstance(message, dict):
        raise ProtocolError(
            "bad_json", f"message must be a JSON object, got {type(message).__name__}"
        )
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_field", 'message has no string "type" field')
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(
            "unknown_type",
            f"unknown message type {kind!r}; known types: {', '.join(MESSAGE_TYPES)}",
            kind,
        )
    return parser(message)


# ------------------------------------------------------------------------- replies


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def error_reply(
    code: str, message: str, request_type: str | None = None, **details: Any
) -> dict[str, Any]:
    """``error``: the guide's fields, then ``details`` a client may act on (see the docs)."""
    reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_type:
        reply["request_type"] = request_type
    reply.update(details)
    return reply


def frame_reply(frame: MouthFrame | None, model_name: str | None) -> dict[str, Any]:
    """``current_frame`` for a finished frame, or the idle answer when there is none."""
    if frame is None:
        return {
            "type": "current_frame",
            "frame_data": None,
            "bounds": None,
            "timestamp": None,
            "model_name": model_name,
            "prediction_shape": PREDICTION_SHAPE,
            "frame_index": None,
            "frame_id": None,
            "idle": True,
        }
    jpeg = base64.b64encode(frame.jpeg).decode("ascii")
    return {"type": "current_frame", "frame_data": jpeg, **_frame_header(frame)}


def _frame_header(frame: MouthFrame) -> dict[str, Any]:
    """A finished frame's ``current_frame`` fields but ``type`` and ``frame_data``."""
    return {
        "bounds": list(frame.bounds),
        "timestamp": round(frame.made_at, 3),
        "model_name": frame.model_name,
        "prediction_shape": PREDICTION_SHAPE,
        "frame_index": frame.frame_index,
        "frame_id": frame.frame_id,
        "idle": False,
        "latency_ms": round(frame.latency_ms, 1),
    }


BINARY_FRAME_MAGIC = b"LSF1"


def binary_frame(frame: MouthFrame) -> bytes:
    """A finished frame as one binary message (``configure.binary_frames``).

    The bytes are ``LSF1``, the header's length (uint32, little-endian), the header (UTF-8 JSON:
    the ``current_frame`` fields but ``frame_data``), then the JPEG itself: no base64, no JSON
    escaping of the image.
    """
    head = dumps({"type": "current_frame", **_frame_header(frame)}).encode()
    return b"".join((BINARY_FRAME_MAGIC, len(head).to_bytes(4, "little"), head, frame.jpeg))


def parse_binary_frame(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A client's reading of ``binary_frame``: (the header, the JPEG)."""
    if data[:4] != BINARY_FRAME_MAGIC or len(data) < 8:
        raise ValueError("not a lipstream binary frame (it starts with LSF1)")
    size = int.from_bytes(data[4:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def frames_generated_reply(count: int, buffer_fill: int) -> dict[str, Any]:
    """``frames_generated``: frames a poll client can now take with ``get_frame``."""
    return {"type": "frames_generated", "count": count, "buffer_fill": buffer_fill}


def speech_ended_reply(frames: int, next_frame_index: int) -> dict[str, Any]:
    return {"type": "speech_ended", "frames": frames, "next_frame_index": next_frame_index}


def interrupted_reply(
    dropped_frames: int, dropped_audio_ms: float, next_frame_index: int
) -> dict[str, Any]:
    return {
        "type": "interrupted",
        "dropped_frames": dropped_frames,
        "dropped_audio_ms": round(dropped_audio_ms, 1),
        "next_frame_index": next_frame_index,
    }


def model_changed_reply(
    model_name: str,
    frame_count: int,
    lookahead_ms: float,
    pipeline_latency_ms: float,
    latency_measured: bool,
) -> dict[str, Any]:
    return {
        "type": "model_changed",
        "model_name": model_name,
        "frame_count": frame_count,
        "fps": FPS,
        "lookahead_ms": round(lookahead_ms, 1),
        "pipeline_latency_ms": round(pipeline_latency_ms, 1),
        "latency_measured": latency_measured,
        "video_url": f"/api/model-video/{model_name}",
    }


def configured_reply(
    *,
    push_frames: bool,
    binary_frames: bool,
    audio_sample_rate: int,
    audio_chunk_duration_ms: int,
    inference_batch_size: int,
    audio_buffer_size_ms: float,
    lookahead_ms: float,
    pipeline_latency_ms: float,
    latency_measured: bool,
) -> dict[str, Any]:
    return {
        "type": "configured",
        "push_frames": push_frames,
        "binary_frames": binary_frames,
        "audio_sample_rate": audio_sample_rate,
        "audio_chunk_duration_ms": audio_chunk_duration_ms,
        "inference_batch_size": inference_batch_size,
        "audio_buffer_size_ms": audio_buffer_size_ms,
        "lookahead_ms": round(lookahead_ms, 1),
        "pipeline_latency_ms": round(pipeline_latency_ms, 1),
        "latency_measured": latency_measured,
    }


def pong_reply(fields: dict[str, Any], server_time: float) -> dict[str, Any]:
    return {"type": "pong", **fields, "server_time": server_time}


def stats_reply(**fields: Any) -> dict[str, Any]:
    """``stats``: the guide's fields first, then lipstream's (docs/frame-protocol.md)."""
    return {"type": "stats", **fields}
