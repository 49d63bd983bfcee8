"""Fixtures for the web server tests: real servers on loopback, and a fake OpenAI to mint keys.

The servers run on an event loop in a background thread, so the tests themselves are plain
synchronous functions talking HTTP to them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lipstream.settings import Settings, load_settings
from lipstream.web.app import create_app
from lipstream.web.server import WebServer, start_web_server

REPO = Path(__file__).resolve().parents[2]
DEMO_PACKAGE = REPO / "models" / "demo"
OPENAI_KEY = "sk-test-0123456789abcdefSECRET"
EPHEMERAL_KEY = "ek_test_68af7c0e"
EXPIRES_AT = 1757172600  # 2025-09-06T15:30:00Z
INDEX_HTML = "<!doctype html><title>lipstream console</title><h1>console</h1>\n"


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@dataclass
class FakeOpenAI:
    """A stand-in for api.openai.com's client_secrets endpoint that behaves like the real one.

    It refuses a wrong key with 401 (quoting the key, as OpenAI does), records what it got,
    and can be told to answer slowly, with an error, or with something that is not JSON.
    """

    url: str = ""
    key: str = OPENAI_KEY  # the key it accepts
    ephemeral_key: str = EPHEMERAL_KEY
    expires_at: int = EXPIRES_AT
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0
    status: int = 200
    answer: Any = None

    def reset(self) -> None:
        self.requests.clear()
        self.delay_s, self.status, self.answer = 0.0, 200, None

    async def client_secrets(self, request: Request) -> Response:
        body = await request.json()
        auth = request.headers.get("authorization", "")
        self.requests.append({"authorization": auth, "body": body})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if auth != f"Bearer {OPENAI_KEY}":
            given = auth.removeprefix("Bearer ")
            return JSONResponse(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {given}. You can find your "
                        "API key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        if self.status != 200 or self.answer is not None:
            if isinstance(self.answer, str):
                return Response(self.answer, status_code=self.status, media_type="text/html")
            return JSONResponse(self.answer, status_code=self.status)
        return JSONResponse(
            {
                "value": EPHEMERAL_KEY,
                "expires_at": EXPIRES_AT,
                "session": {
                    "type": "realtime",
                    "object": "realtime.session",
                    "model": body["session"]["model"],
                    "audio": body["session"]["audio"],
                },
            }
        )


@pytest.fixture(scope="session")
def fake_openai(loop_thread: LoopThread) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = Starlette(
        routes=[Route("/v1/realtime/client_secrets", fake.client_secrets, methods=["POST"])]
    )
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))

    async def start() -> asyncio.Task[None]:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        return serving

    serving = loop_thread.run(start())
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield fake

    async def stop() -> None:
        server.should_exit = True
        await serving

    loop_thread.run(stop())


@pytest.fixture
def openai(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI, reset to answer normally."""
    fake_openai.reset()
    return fake_openai


@pytest.fixture(scope="session")
def console_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A console folder with an index page and a script; a secret file sits beside it."""
    root = tmp_path_factory.mktemp("web")
    console = root / "console"
    console.mkdir()
    (console / "index.html").write_text(INDEX_HTML)
    (console / "app.js").write_text("console.log('lipstream');\n")
    (root / "secret.txt").write_text("not for the browser\n")
    return console


@pytest.fixture(scope="session")
def web_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the demo avatar and a broken package."""
    if not (DEMO_PACKAGE / "manifest.json").is_file():
        pytest.skip(f"the demo avatar is missing at {DEMO_PACKAGE}")
    root = tmp_path_factory.mktemp("models")
    (root / "demo").symlink_to(DEMO_PACKAGE)
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text('{"format": "lipstream-model-package"}')
    return root


@pytest.fixture
def make_settings(
    console_dir: Path, web_models_dir: Path, fake_openai: FakeOpenAI
) -> Callable[..., Settings]:
    """Settings for a test server: the fake OpenAI, the test console and models, no .env."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 3000,
            "openai_api_key": OPENAI_KEY,
            "openai_base_url": fake_openai.url,
            "openai_realtime_model": "gpt-realtime",
            "openai_realtime_voice": "marin",
            "openai_token_ttl_s": 600,
            "models_dir": web_models_dir,
            "console_dir": console_dir,
            "cors_allow_origins": (),
            "public_websocket_url": "",
            "websocket_port": 8080,
            "audio_sample_rate": 24000,
            "audio_chunk_duration_ms": 40,
        }
        values.update(overrides)
        return load_settings(None, **values)

    return make


@pytest.fixture
def serve(loop_thread: LoopThread) -> Iterator[Callable[..., WebServer]]:
    """Start a web server on a free loopback port; it is stopped after the test."""
    started: list[WebServer] = []

    def start(settings: Settings, **app_options: Any) -> WebServer:
        async def go() -> WebServer:
            app = create_app(settings, **app_options)
            return await start_web_server(settings, app, port=0)

        server = loop_thread.run(go())
        started.append(server)
        return server

    yield start
    for server in started:
        loop_thread.run(server.stop())


@pytest.fixture
def web(serve: Callable[..., WebServer], make_settings: Callable[..., Settings]) -> str:
    """The base URL of a web server with the default test settings."""
    return serve(make_settings()).url


@pytest.fixture
def raw_get() -> Callable[[str, str], tuple[int, bytes]]:
    """``raw_get(base_url, path)``: GET the path exactly as written, not normalised by a client."""
    return _raw_get


def _raw_get(url: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no URL normalisation): (status, body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + timeout
        while chunk := conn.recv(65536):
            data += chunk
            if time.monotonic() > deadline:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
