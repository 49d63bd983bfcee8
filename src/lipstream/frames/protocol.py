"""The frame generator's WebSocket messages: parsing what clients send, shaping what they get.

See docs/frame-protocol.md. Parsing raises ProtocolError, whose ``code`` goes into the
``error`` reply; nothing here touches a socket.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from lipstream.errors import InvalidInput
from lipstream.frames.session import MouthFrame

MESSAGE_TYPES = (
    "audio_chunk",
    "get_frame",
    "set_model",
    "get_stats",
    "configure",
    "end_of_speech",
    "interrupt",
    "ping",
)
PREDICTION_SHAPE = "320x320x3"


class ProtocolError(InvalidInput):
    """A message the frame generator cannot take; ``code`` is the error reply's code."""

    def __init__(self, code: str, message: str, request_type: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_type = request_type


def parse_message(text: str) -> dict[str, Any]:
    """A client's JSON text message as a dict with a known ``type``."""
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
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(
            "unknown_type",
            f"unknown message type {kind!r}; known types: {', '.join(MESSAGE_TYPES)}",
            kind,
        )
    return message


def string_field(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise ProtocolError(
            "bad_field", f'{message["type"]} needs a non-empty string "{name}"', message["type"]
        )
    return value


def optional_bool(message: dict[str, Any], name: str) -> bool | None:
    value = message.get(name)
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(
            "bad_field", f'"{name}" must be true or false, got {value!r}', message["type"]
        )
    return value


def optional_int(message: dict[str, Any], name: str) -> int | None:
    value = message.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProtocolError(
            "bad_field", f'"{name}" must be an integer, got {value!r}', message["type"]
        )
    return value


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
    return {
        "type": "current_frame",
        "frame_data": base64.b64encode(frame.jpeg).decode("ascii"),
        "bounds": list(frame.bounds),
        "timestamp": round(frame.made_at, 3),
        "model_name": frame.model_name,
        "prediction_shape": PREDICTION_SHAPE,
        "frame_index": frame.frame_index,
        "frame_id": frame.frame_id,
        "idle": False,
        "latency_ms": round(frame.latency_ms, 1),
    }


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
