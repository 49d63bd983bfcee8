"""Fixtures for the web server tests: real servers on loopback, and a fake OpenAI to mint keys.

The servers run on an event loop in a background thread, so the tests themselves are plain
synchronous functions talking HTTP to them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit.fake_openai import OPENAI_KEY, FakeOpenAI, serve_fake_openai
from testkit.loop import LoopThread

from lipstream.settings import Settings, load_settings
from lipstream.web.app import create_app
from lipstream.web.server import WebServer, start_web_server

REPO = Path(__file__).resolve().parents[2]
DEMO_PACKAGE = REPO / "models" / "demo"
INDEX_HTML = "<!doctype html><title>lipstream console</title><h1>console</h1>\n"


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def fake_openai(loop_thread: LoopThread) -> Iterator[FakeOpenAI]:
    with serve_fake_openai(loop_thread) as fake:
        yield fake


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
