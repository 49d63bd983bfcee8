"""The frame generator: a WebSocket server, one independent Connection (and Session) per
client (frames/connection.py). The lip-sync service is reached only through gRPC
(LipSyncClient), so the two scale apart.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from websockets.asyncio.server import Server, ServerConnection, serve

from lipstream.audio.timeline import SYNCTALK2D
from lipstream.errors import LipstreamError
from lipstream.frames import protocol as proto
from lipstream.frames.admission import Admission
from lipstream.frames.connection import Connection
from lipstream.frames.lipsync_client import LipSyncClient, client_tls
from lipstream.frames.timings import Timings, pipeline_latency_ms, processing_estimate_ms
from lipstream.lifecycle import serve_until_signalled
from lipstream.logs import announce
from lipstream.metrics import FrameMetrics
from lipstream.settings import Settings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # hard limit: larger messages close the connection (1009)


class FrameGenerator:
    """The WebSocket side: admits connections, keeps the count, answers plain HTTP."""

    def __init__(self, settings: Settings, client: LipSyncClient) -> None:
        self.settings = settings
        self.client = client
        self.connections: dict[str, Connection] = {}
        self.timings = Timings()  # every session's frames: a new session's first estimate
        self.metrics = FrameMetrics()
        self.admission = Admission(settings, self.metrics)
        self.process_request = self.admission.process_request
        self.metrics.sessions_active.set_function(lambda: len(self.connections))
        self.metrics.lipsync_reachable.set_function(lambda: float(self.client.connected))
        self.metrics.pipeline_latency.set_function(self.new_session_latency_s)

    def new_session_latency_s(self) -> float:
        """The audio delay a session starting now (on the first model) would be told, in s."""
        processing = processing_estimate_ms(self.timings, None)
        models = self.client.known_models()
        lookahead = models[min(models)].lookahead_ms if models else SYNCTALK2D.lookahead_ms
        return pipeline_latency_ms(lookahead, processing) / 1000.0

    async def handle(self, ws: ServerConnection) -> None:
        address = self.admission.client_address(ws)
        refused = self.admission.refusal(len(self.connections), address)
        if refused is not None:
            reason, message = refused
            self.metrics.sessions_refused.labels(reason).inc()
            self.metrics.errors.labels("too_many_sessions").inc()
            await ws.send(proto.dumps(proto.error_reply("too_many_sessions", message)))
            await ws.close(1013, "too many sessions")
            return
        conn = Connection(self, ws, address)
        self.connections[conn.id] = conn
        self.admission.opened(address)
        self.metrics.sessions_opened.inc()
        log.info("session %s: connected from %s", conn.id, address)
        try:
            await conn.run()
        finally:
            del self.connections[conn.id]
            self.admission.closed(address)
            log.info(
                "session %s: closed (%d frames made, %d dropped)",
                conn.id,
                conn.session.frames_generated,
                conn.session.frames_dropped,
            )


@dataclass
class FrameServerHandle:
    """A running frame generator: where it listens, and how to stop it."""

    server: Server
    client: LipSyncClient
    generator: FrameGenerator
    host: str
    port: int

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.client.close()


async def start_frame_server(settings: Settings) -> FrameServerHandle:
    """Start the frame generator on settings.host:websocket_port (0 picks a free port)."""
    announce("Real-time Lip Sync Frame Generator initialized")
    client = LipSyncClient(
        settings.lipsync_address,
        settings.grpc_deadline_ms,
        tls=client_tls(settings),
        tls_server_name=settings.grpc_tls_server_name,
    )
    try:
        await client.models(refresh=True)
        announce(f"Connected to gRPC service on {settings.lipsync_address}")
    except LipstreamError as exc:
        announce(
            f"gRPC service on {settings.lipsync_address} not reachable yet ({exc}); "
            "sessions will connect when it is up"
        )
    generator = FrameGenerator(settings, client)
    server = await serve(
        generator.handle,
        settings.host,
        settings.websocket_port,
        compression=None,  # deflate makes base64 media 14x slower to send
        max_size=MAX_MESSAGE_BYTES,
        process_request=generator.process_request,
        ping_interval=20,
        ping_timeout=20,
        open_timeout=settings.header_timeout_s,  # a handshake sent byte by byte is cut off
        ssl=_server_tls(settings),
    )
    port = server.sockets[0].getsockname()[1]
    if generator.admission.tokens is None:
        log.warning(
            "SESSION_SECRET is not set: the frame generator accepts any client that reaches "
            "port %d",
            port,
        )
    scheme = "wss" if settings.tls else "ws"
    announce(f"WebSocket server started on {scheme}://{settings.host}:{port}")
    announce(f"Connect your browser to {scheme}://{settings.host}:{port}")
    return FrameServerHandle(server, client, generator, settings.host, port)


def _server_tls(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def run_frame_server(settings: Settings) -> None:
    """Run the frame generator until Ctrl-C or SIGTERM."""
    asyncio.run(serve_until_signalled(start_frame_server(settings)))
