"""Minting OpenAI Realtime ephemeral keys for the browser, so the API key stays on the server.

``POST {OPENAI_BASE_URL}/v1/realtime/client_secrets`` with the server's key answers
``{"value": "ek_...", "expires_at": <epoch seconds>, "session": {...}}``. The browser gets that
answer plus the guide's shape, ``{"client_secret": {"value", "expires_at": "<ISO 8601 UTC>"}}``.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from lipstream.errors import LipstreamError
from lipstream.settings import Settings

log = logging.getLogger(__name__)

CLIENT_SECRETS_PATH = "/v1/realtime/client_secrets"
CALLS_PATH = "/v1/realtime/calls"
DEFAULT_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0
_MAX_UPSTREAM_MESSAGE = 500
# OpenAI quotes a masked key in some messages ("Incorrect API key provided: sk-ab***yz").
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*.]+")


class TokenError(LipstreamError):
    """A token could not be minted; ``status`` and ``code`` are what the browser is told."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


class OpenAITokenClient:
    """Asks OpenAI for ephemeral Realtime keys with the configured model, voice and lifetime.

    One ``httpx.AsyncClient`` is made on first use and closed by ``aclose()``.
    """

    def __init__(self, settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S):
        self._key = settings.openai_api_key
        self._url = settings.openai_base_url + CLIENT_SECRETS_PATH
        self._model = settings.openai_realtime_model
        self._voice = settings.openai_realtime_voice
        self._ttl_s = settings.openai_token_ttl_s
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S))
        self._client: httpx.AsyncClient | None = None

    @property
    def configured(self) -> bool:
        """Whether an API key is set (``OPENAI_API_KEY``)."""
        return self._key is not None and bool(self._key.get_secret_value().strip())

    def request_body(self) -> dict[str, Any]:
        """The JSON body sent to ``/v1/realtime/client_secrets``."""
        return {
            "expires_after": {"anchor": "created_at", "seconds": self._ttl_s},
            "session": {
                "type": "realtime",
                "model": self._model,
                "audio": {"output": {"voice": self._voice}},
            },
        }

    async def mint(self) -> dict[str, Any]:
        """A fresh ephemeral key in both shapes; raises TokenError saying what went wrong."""
        if not self.configured or self._key is None:
            raise TokenError(
                503,
                "openai_not_configured",
                "this server has no OpenAI API key: set OPENAI_API_KEY in the environment or "
                ".env and restart it",
            )
        key = self._key.get_secret_value().strip()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        try:
            answer = await self._client.post(
                self._url,
                json=self.request_body(),
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.TimeoutException:
            log.warning("OpenAI did not answer the token request at %s in time", self._url)
            raise TokenError(
                504,
                "openai_timeout",
                f"OpenAI did not answer within {self._timeout.read:g} s; try again",
            ) from None
        except httpx.HTTPError as exc:
            reason = _scrub(f"{type(exc).__name__}: {exc}", key)
            log.warning("cannot reach OpenAI at %s: %s", self._url, reason)
            raise TokenError(
                502, "openai_unreachable", f"cannot reach OpenAI at {self._url}: {reason}"
            ) from None
        if answer.is_error:
            detail = _scrub(_upstream_message(answer), key)
            status = answer.status_code
            log.warning("OpenAI refused the token request (HTTP %d): %s", status, detail)
            raise TokenError(
                502,
                "openai_error",
                f"OpenAI refused the token request (HTTP {status}): {detail}",
            )
        token = _read_answer(answer)
        log.info("minted a Realtime key for %s, expires %s", self._model, token["expires_at"])
        return token

    async def aclose(self) -> None:
        """Close the HTTP client (its connections to OpenAI)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _read_answer(answer: httpx.Response) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TokenError(502, "openai_bad_answer", "OpenAI answered with something other than JSON")
    # The older /v1/realtime/sessions answer nests the key; accept both.
    nested = data.get("client_secret")
    source = nested if isinstance(nested, dict) and "value" not in data else data
    value, expires_at = source.get("value"), source.get("expires_at")
    if not isinstance(value, str) or not value:
        raise TokenError(502, "openai_bad_answer", "OpenAI's answer holds no key ('value')")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        raise TokenError(502, "openai_bad_answer", "OpenAI's answer holds no 'expires_at' time")
    return {
        "client_secret": {"value": value, "expires_at": iso_utc(expires_at)},
        "value": value,
        "expires_at": expires_at,
        "session": data.get("session"),
    }


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC, the guide's ``2025-09-06T15:30:00Z``."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _upstream_message(answer: httpx.Response) -> str:
    """OpenAI's own error message (``{"error": {"message"}}``), else the start of the body."""
    try:
        data = answer.json()
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message.strip():
        message = answer.text.strip() or answer.reason_phrase or "no message"
    return message[:_MAX_UPSTREAM_MESSAGE]


def _scrub(text: str, key: str) -> str:
    """``text`` with the API key, and anything that looks like one, taken out."""
    if key:
        text = text.replace(key, "[redacted]")
    return _KEY_LIKE.sub("sk-[redacted]", text)
