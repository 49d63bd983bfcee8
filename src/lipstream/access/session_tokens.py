"""Short-lived, HMAC-signed tokens that let a client open a frame-generator session.

The web server issues them (``POST /api/session``) and the frame generator checks them at the
WebSocket upgrade (``?token=`` on the URL, since browsers cannot set headers there). Both read
the same ``SESSION_SECRET``. Signing and expiry are itsdangerous' ``URLSafeTimedSerializer``;
each token carries a random nonce, so no two are alike.
"""

from __future__ import annotations

import secrets
import time

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from lipstream.errors import LipstreamError
from lipstream.settings import Settings

_SALT = "lipstream-session"


class TokenRefused(LipstreamError):
    """A session token is missing, forged or expired; the message says which."""


class SessionTokens:
    """Issues and checks session tokens signed with ``secret``, valid for ``ttl_s`` seconds."""

    def __init__(self, secret: str, ttl_s: int, clock=time.time) -> None:
        if not secret:
            raise ValueError("a session secret must not be empty")
        self.ttl_s = ttl_s
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionTokens | None:
        """The tokens of SESSION_SECRET and SESSION_TOKEN_TTL_S; None without a secret."""
        if not settings.session_secret:
            return None
        return cls(settings.session_secret.get_secret_value(), settings.session_token_ttl_s)

    def issue(self) -> tuple[str, float]:
        """A new token and when it expires (Unix time)."""
        issued = self._clock()
        token = self._serializer.dumps({"n": secrets.token_urlsafe(9)})
        return token, issued + self.ttl_s

    def check(self, token: str | None) -> None:
        """Return if ``token`` is valid now; else raise TokenRefused saying why."""
        if not token:
            raise TokenRefused(
                "a session token is required: get one from POST /api/session and connect "
                "with ?token=..."
            )
        try:
            self._serializer.loads(token, max_age=self.ttl_s)
        except SignatureExpired:
            raise TokenRefused(
                f"the session token has expired (tokens last {self.ttl_s} s): get a new one "
                "from POST /api/session"
            ) from None
        except BadSignature:
            raise TokenRefused(
                "the session token is not valid (not signed by this server)"
            ) from None
