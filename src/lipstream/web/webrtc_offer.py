"""``POST /api/webrtc/offer``: a WebRTC call with the avatar (``lipstream.webrtc``).

The body is ``{"sdp", "type": "offer", "model", "record"}`` (``model`` optional: ``demo`` when
there is one, else the first model; ``record``: write the call to ``RECORDINGS_DIR``). The
answer is ``{"sdp", "type": "answer", "peer_id", "model"}`` (and ``recording``, the file).
Each call is a frame generator session of its own, opened by the web server on the client's
behalf (with a session token when ``SESSION_SECRET`` is set), so ``MAX_SESSIONS`` counts it.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from lipstream.access.session_tokens import SessionTokens
from lipstream.errors import InvalidInput, LipstreamError, ServiceUnavailable
from lipstream.frames.client import AvatarStream
from lipstream.settings import Settings
from lipstream.web.catalog import ModelCatalog
from lipstream.webrtc.peer import WebRTCPeers, parse_ice_servers, parse_offer

DEFAULT_MODEL = "demo"
_ANY_ADDRESS = {"0.0.0.0", "::", ""}


class WebRTCOffers:
    """The web server's WebRTC calls."""

    def __init__(
        self, settings: Settings, catalog: ModelCatalog, tokens: SessionTokens | None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.tokens = tokens
        self.peers = WebRTCPeers(parse_ice_servers(settings.webrtc_ice_servers))

    async def answer(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body)
        except ValueError:
            raise InvalidInput('the body must be JSON: {"sdp", "type": "offer", "model"}') from None
        offer, model, record = parse_offer(request)
        package = await self.catalog.find(model or await self._default_model())
        stream = AvatarStream(
            self._frames_url(),
            package.name,
            models_dir=self.settings.models_dir,
            open_timeout=10.0,
            ssl=self._ssl(),
        )
        try:
            record_dir = self.settings.recordings_dir if record else None
            peer, answer = await self.peers.offer(stream, offer, record_dir)
        except InvalidInput:
            raise
        except LipstreamError as exc:
            raise ServiceUnavailable(f"no avatar session could be started: {exc}") from exc
        reply = {"sdp": answer.sdp, "type": answer.type, "peer_id": peer.id, "model": package.name}
        if peer.recording_path is not None:
            reply["recording"] = str(peer.recording_path)
        return reply

    async def close(self) -> None:
        await self.peers.close()

    async def _default_model(self) -> str:
        names = sorted(pkg.name for pkg in (await self.catalog.packages()).packages)
        if not names:
            raise InvalidInput("no model is served: there is no avatar to call")
        return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]

    def _frames_url(self) -> str:
        host = self.settings.host
        host = "127.0.0.1" if host in _ANY_ADDRESS else host
        host = f"[{host}]" if ":" in host else host
        scheme = "wss" if self.settings.tls else "ws"
        url = f"{scheme}://{host}:{self.settings.websocket_port}/"
        if self.tokens is not None:
            url += f"?token={self.tokens.issue()[0]}"
        return url

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.settings.tls:
            return None
        ca = self.settings.grpc_tls_ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)
