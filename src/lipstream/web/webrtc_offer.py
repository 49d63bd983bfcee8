"""``POST /api/webrtc/offer``: a WebRTC call with the avatar (``lipstream.webrtc``).

The body is ``{"sdp", "type": "offer", "model", "record"}``: ``model`` is optional (``demo``
when there is one, else the first model); ``record`` writes the call to ``RECORDINGS_DIR``
(refused when that is not set). The answer is ``{"sdp", "type": "answer", "peer_id", "model"}``
(and ``recording``, the file's name).

Each call is a frame generator session of its own, opened by the web server on the client's
behalf: with a session token when ``SESSION_SECRET`` is set, and with the client's address in
``X-Forwarded-For``, which the frame generator counts (``MAX_SESSIONS_PER_IP``) when the web
server's address is in its ``TRUSTED_PROXIES``.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from lipstream.access.session_tokens import SessionTokens
from lipstream.errors import InvalidInput, LipstreamError, ServiceUnavailable
from lipstream.frames.client import AvatarStream
from lipstream.settings import Settings, dial_host
from lipstream.web.catalog import ModelCatalog
from lipstream.webrtc.peer import WebRTCPeers, check_offer, parse_ice_servers

DEFAULT_MODEL = "demo"


def parse_offer_request(body: bytes) -> tuple[str, str | None, bool]:
    """(the SDP, the model asked for, whether to record) of a request body, or InvalidInput."""
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        raise InvalidInput('the body must be a JSON object {"sdp", "type": "offer", "model"}')
    sdp, kind, model = request.get("sdp"), request.get("type"), request.get("model")
    record = request.get("record", False)
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise InvalidInput('"sdp" must be the offer\'s session description (it starts "v=0")')
    if kind != "offer":
        raise InvalidInput(f'"type" must be "offer", got {kind!r}')
    if model is not None and not isinstance(model, str):
        raise InvalidInput(f'"model" must be a model name, got {model!r}')
    if not isinstance(record, bool):
        raise InvalidInput(f'"record" must be true or false, got {record!r}')
    return sdp, model, record


class WebRTCOffers:
    """The web server's WebRTC calls."""

    def __init__(
        self, settings: Settings, catalog: ModelCatalog, tokens: SessionTokens | None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.tokens = tokens
        self.peers = WebRTCPeers(parse_ice_servers(settings.webrtc_ice_servers))
        # for browsers (GET /api/config): the same servers, as RTCPeerConnection takes them
        self.ice_servers = [
            {
                k: getattr(server, k)
                for k in ("urls", "username", "credential")
                if getattr(server, k)
            }
            for server in self.peers.ice_servers
        ]

    async def answer(self, body: bytes, client: str | None) -> dict[str, Any]:
        sdp, model, record = parse_offer_request(body)
        offer = check_offer(sdp)
        if record and self.settings.recordings_dir is None:
            raise InvalidInput("recording is off on this server (RECORDINGS_DIR is not set)")
        package = await self.catalog.find(model or await self._default_model())
        stream = AvatarStream(
            self._frames_url(),
            package.name,
            models_dir=self.settings.models_dir,
            open_timeout=10.0,
            ssl=self._ssl(),
            headers={"X-Forwarded-For": client} if client and client != "unknown" else None,
        )
        record_dir = self.settings.recordings_dir if record else None
        try:
            peer, answer = await self.peers.offer(stream, offer, record_dir)
        except InvalidInput:
            raise
        except LipstreamError as exc:
            raise ServiceUnavailable(f"no avatar session could be started: {exc}") from exc
        reply = {"sdp": answer.sdp, "type": answer.type, "peer_id": peer.id, "model": package.name}
        if peer.recording_path is not None:
            reply["recording"] = peer.recording_path.name
        return reply

    async def close(self) -> None:
        await self.peers.close()

    async def _default_model(self) -> str:
        names = sorted(pkg.name for pkg in (await self.catalog.packages()).packages)
        if not names:
            raise InvalidInput("no model is served: there is no avatar to call")
        return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]

    def _frames_url(self) -> str:
        scheme = "wss" if self.settings.tls else "ws"
        url = f"{scheme}://{dial_host(self.settings.host)}:{self.settings.websocket_port}/"
        if self.tokens is not None:
            url += f"?token={self.tokens.issue()[0]}"
        return url

    def _ssl(self) -> ssl.SSLContext | None:
        """Under TLS the frame generator is dialled at this machine's own address: its
        certificate must name it, or ``GRPC_TLS_CA_FILE`` hold the CA that signed it."""
        if not self.settings.tls:
            return None
        ca = self.settings.grpc_tls_ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)
