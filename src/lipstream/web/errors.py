"""Errors as JSON: the HTTP status and error code each failure is answered with.

Every error the web server answers is ``{"error": {"code": "...", "message": "..."}}`` with the
HTTP status that fits, and never a stack trace. One table, ``_STATUS``, maps lipstream's
exceptions to their status and code, as ``lipstream.service.server`` maps them to gRPC codes;
starlette's own ``HTTPException`` (404, 405) and unexpected exceptions are answered in the same
shape. ``EXCEPTION_HANDLERS`` are the handlers ``create_app`` installs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from lipstream.access.rate_limits import RateLimited
from lipstream.errors import (
    InvalidInput,
    LipstreamError,
    ModelNotFound,
    Overloaded,
    ServiceUnavailable,
)
from lipstream.web.catalog import BadModelName, UnknownModel
from lipstream.web.openai_token import TokenError
from lipstream.web.speech import SpeechRequestError, SpeechUnavailable

log = logging.getLogger(__name__)


class BodyTooLarge(InvalidInput):
    """A request body over the size an endpoint accepts."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than {limit} bytes")


class SessionTokensOff(LipstreamError):
    """POST /api/session while SESSION_SECRET is not set: the frame generator takes anyone."""


# Exception class -> (HTTP status, error code); an error is answered by the entry of the most
# specific class it is an instance of. None takes the error's own ``status`` or ``code``: a
# token error passes on what OpenAI answered, a speech error names its problem.
_STATUS: Mapping[type[LipstreamError], tuple[int | None, str | None]] = MappingProxyType(
    {
        TokenError: (None, None),
        RateLimited: (429, "rate_limited"),
        SessionTokensOff: (404, "session_tokens_off"),
        BodyTooLarge: (413, "body_too_large"),
        SpeechRequestError: (400, None),
        SpeechUnavailable: (503, None),
        ModelNotFound: (404, "unknown_model"),
        BadModelName: (400, "bad_model_name"),
        InvalidInput: (400, "bad_request"),
        Overloaded: (503, "overloaded"),
        ServiceUnavailable: (503, "unavailable"),
    }
)

# Starlette's HTTP errors: status -> error code (others are "http_<status>").
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}

# Failures outside the server that the operator hears of elsewhere: not logged as errors here.
_NOT_LOGGED = (TokenError, SpeechUnavailable)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error every endpoint answers with."""
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def _lipstream_status(exc: LipstreamError) -> tuple[int, str]:
    """The HTTP status and error code ``exc`` is answered with (500 for anything unmapped)."""
    for kind in type(exc).__mro__:
        if kind in _STATUS:
            status, code = _STATUS[kind]
            return (
                status if status is not None else getattr(exc, "status", 500),
                code if code is not None else getattr(exc, "code", "internal_error"),
            )
    return 500, "internal_error"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 304:
        return Response(status_code=304, headers=exc.headers)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    if exc.status_code == 404:
        message = f"nothing here: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _lipstream_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LipstreamError)
    status, code = _lipstream_status(exc)
    if status >= 500 and not isinstance(exc, _NOT_LOGGED):
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": "2"} if code in ("tts_busy", "overloaded") else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    extra = {"known_models": exc.known} if isinstance(exc, UnknownModel) else {}
    return error_response(status, code, str(exc), headers=headers, **extra)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed to answer; see its log")


EXCEPTION_HANDLERS: Mapping[Any, ExceptionHandler] = MappingProxyType(
    {
        HTTPException: _http_error,
        LipstreamError: _lipstream_error,
        Exception: _unexpected_error,
    }
)
