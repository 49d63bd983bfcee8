"""Running the web server with uvicorn: inside an asyncio program, or as ``lipstream web``.

``start_web_server`` binds the socket itself, so the port is known (and a busy port is reported)
before it returns; ``PORT=0`` picks a free port. ``run_web_server`` serves until Ctrl-C or
SIGTERM and then shuts down cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Iterator

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from lipstream.errors import LipstreamError
from lipstream.logs import announce
from lipstream.settings import Settings
from lipstream.web.app import create_app

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"}
_WILDCARD_HOSTS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
_STARTUP_POLL_S = 0.01
_GRACEFUL_SHUTDOWN_S = 5


class _HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request line and headers do
    not all arrive within ``header_timeout_s`` of their first byte (or of the connection):
    a client trickling headers byte by byte (slowloris) cannot hold a connection open."""

    header_timeout_s = 10.0
    _headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # a new request is starting
            self._arm()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # its headers are in
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _too_slow(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            log.info(
                "closed a connection from %s: no complete request headers in time", self.client
            )
            self.transport.close()


def _header_deadline(timeout_s: float) -> type[_HeaderDeadline]:
    return type("HeaderDeadline", (_HeaderDeadline,), {"header_timeout_s": timeout_s})


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program it runs in."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """A running web server: where it listens, and ``stop()``."""

    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None],
        host: str,
        port: int,
        scheme: str = "http",
    ):
        self._server = server
        self._task = task
        self.host = host
        self.port = port
        self.scheme = scheme

    @property
    def url(self) -> str:
        """The server's base URL from this machine, e.g. ``http://127.0.0.1:3000``."""
        return _base_url(_WILDCARD_HOSTS.get(self.host, self.host), self.port, self.scheme)

    @property
    def browser_url(self) -> str:
        """The base URL the start-up lines show: ``http://localhost:PORT`` for local addresses."""
        host = "localhost" if self.host in _LOCAL_HOSTS else self.host
        return _base_url(host, self.port, self.scheme)

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def wait(self) -> None:
        """Return when the server has stopped (by ``stop()`` or because it failed)."""
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop accepting connections, let requests in progress finish (up to 5 s), and close."""
        self._server.should_exit = True
        await self._task


async def start_web_server(
    settings: Settings,
    app: Starlette | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
) -> WebServer:
    """Serve ``app`` (default: ``create_app(settings)``) and print the guide's start-up lines.

    It listens on ``host``/``port`` when given, else HOST/PORT; port 0 picks a free port (the
    handle's ``port`` says which).
    """
    app = app if app is not None else create_app(settings)
    host = settings.host if host is None else host
    sock = _listen(host, settings.port if port is None else port)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="none",
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For counts from TRUSTED_PROXIES only (access/)
        http=_header_deadline(settings.header_timeout_s),
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="lipstream-web-server")
    while not server.started:
        if task.done():
            sock.close()
            error = task.exception() if not task.cancelled() else None
            raise LipstreamError(f"the web server failed to start: {error}") from error
        await asyncio.sleep(_STARTUP_POLL_S)
    bound = sock.getsockname()[1]
    handle = WebServer(server, task, host, bound, "https" if settings.tls else "http")
    announce(f"Real-time Lip Sync Token Server starting on port {bound}")
    announce(f"Serving static files from: {app.state.console_dir}")
    announce(f"Token endpoint: {handle.browser_url}/token")
    announce(f"Browser access: {handle.browser_url}/index.html")
    return handle


def run_web_server(settings: Settings, *, port: int | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM, then shut down cleanly (the ``lipstream web`` command)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_stopped(settings, port))


async def _serve_until_stopped(settings: Settings, port: int | None) -> None:
    server = await start_web_server(settings, port=port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not on this platform / not main thread
            pass
    try:
        async with asyncio.TaskGroup() as tasks:
            stopped = tasks.create_task(stop.wait(), name="lipstream-web-stop-signal")
            ended = tasks.create_task(server.wait(), name="lipstream-web-serving")
            await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            ended.cancel()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if server.running:
            log.info("stopping the web server")
            await server.stop()
    announce("Web server stopped")


def _base_url(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise LipstreamError(f"cannot listen on HOST={host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        in_use = exc.errno == errno.EADDRINUSE
        hint = " (another server uses it: set PORT or --port)" if in_use else ""
        raise LipstreamError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.setblocking(False)
    return sock
