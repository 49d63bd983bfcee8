"""Who gets a frame-generator session: tokens at the upgrade, caps per server and per address.

``Admission.process_request`` answers what is not a WebSocket upgrade (``GET /metrics``, and
426 for anything else, as the guide expects) and refuses an upgrade without a valid session
token with HTTP 401 when ``SESSION_SECRET`` is set. ``Admission.refusal`` decides, once the
socket is open, whether the server (``MAX_SESSIONS``) or the client's address
(``MAX_SESSIONS_PER_IP``) already has all the sessions it may have.
"""

from __future__ import annotations

import logging
from collections import Counter
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from lipstream.access.client_address import ClientAddresses
from lipstream.access.session_tokens import SessionTokens, TokenRefused
from lipstream.metrics import FrameMetrics, exposition
from lipstream.settings import Settings

log = logging.getLogger(__name__)

HTTP_ANSWER = (
    "This is the lipstream frame generator. Connect with a WebSocket to ws://{host}:{port}/ "
    "(see docs/frame-protocol.md).\n"
)


class Admission:
    """The frame generator's door: tokens, session caps, and its plain-HTTP answers."""

    def __init__(self, settings: Settings, metrics: FrameMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.addresses = ClientAddresses(settings.trusted_proxies)
        self.tokens = SessionTokens.from_settings(settings)
        self.per_address: Counter[str] = Counter()

    def client_address(self, ws: ServerConnection) -> str:
        peer = ws.remote_address[0] if ws.remote_address else None
        lines = ws.request.headers.get_all("X-Forwarded-For") if ws.request else []
        return self.addresses.resolve(peer, lines)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """None lets an upgrade through; a Response answers the request instead."""
        url = urlsplit(request.path)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if url.path == "/metrics":
                body, content_type = exposition(self.metrics.registry)
                response = connection.respond(HTTPStatus.OK, body.decode())
                del response.headers["Content-Type"]  # a multidict: replace, not add
                response.headers["Content-Type"] = content_type
                return response
            host, port = connection.local_address[:2]
            answer = HTTP_ANSWER.format(host=host, port=port)
            response = connection.respond(HTTPStatus.UPGRADE_REQUIRED, answer)
            response.headers["Upgrade"] = "websocket"
            return response
        if self.tokens is not None:
            token = parse_qs(url.query).get("token", [None])[0]
            try:
                self.tokens.check(token)
            except TokenRefused as exc:
                self.metrics.sessions_refused.labels("token").inc()
                log.info("refused a WebSocket from %s: %s", connection.remote_address, exc)
                return connection.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
        return None

    def refusal(self, sessions: int, address: str) -> tuple[str, str] | None:
        """(reason, message) when a new session may not start; None when it may."""
        limit = self.settings.max_sessions
        if sessions >= limit:
            return "max_sessions", (
                f"the frame generator serves at most {limit} sessions at once (MAX_SESSIONS); "
                "try again later"
            )
        per_address = self.settings.max_sessions_per_ip
        if self.per_address[address] >= per_address:
            return "max_sessions_per_ip", (
                f"{address} already has {per_address} sessions open, the most one address may "
                "have (MAX_SESSIONS_PER_IP); close one or try again later"
            )
        return None

    def opened(self, address: str) -> None:
        self.per_address[address] += 1

    def closed(self, address: str) -> None:
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]
