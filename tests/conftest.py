"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SYNCTALK2D = REPO.parent / "shared" / "synctalk2d"


@pytest.fixture(scope="session")
def synctalk2d_vectors() -> Path:
    """The folder of reference vectors made with SyncTalk_2D's own code (beside the clone)."""
    if not (SHARED_SYNCTALK2D / "manifest.json").is_file():
        pytest.skip(f"SyncTalk_2D reference vectors not found at {SHARED_SYNCTALK2D}")
    return SHARED_SYNCTALK2D


DEMO_PACKAGE = REPO / "models" / "demo"
LOW_LATENCY_PACKAGE = REPO / "models" / "demo-65ms"  # the demo trained for 65 ms of lookahead

OPEN_TIMEOUT_S = 30.0
"""Deadline for a test's WebSocket handshake: it catches a server that never answers, while a
loaded two-core machine (a TLS handshake, a busy event loop) may take seconds to."""


@pytest.fixture(scope="session")
def demo_package() -> Path:
    """The shipped demo avatar's package (read it; copy it before changing anything)."""
    return DEMO_PACKAGE


SPEECH_WAV = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
)
LONG_SPEECH_WAV = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
)


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    """A real speech recording (3 s, 16 kHz mono) from Debian's pocketsphinx-testdata."""
    if not SPEECH_WAV.is_file():
        pytest.fail(f"{SPEECH_WAV} is missing: `make test` installs pocketsphinx-testdata")
    return SPEECH_WAV


@pytest.fixture(scope="session")
def speech16k(speech_wav):
    """The recording above as int16 samples at 16 kHz."""
    from lipstream.audio.files import read_audio_file

    return read_audio_file(speech_wav, 16000).samples


def copy_package(source: Path, target: Path, name: str) -> Path:
    """A second package: ``source``'s files linked under a new name (for model switching)."""
    import json

    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "manifest.json":
            (target / item.name).symlink_to(item)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["name"] = name
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


class BackgroundSystem:
    """``lipstream serve``'s three services running in a thread of the test process."""

    def __init__(self, **overrides) -> None:
        import asyncio
        import threading

        from lipstream.settings import load_settings

        # HEADER_TIMEOUT_S (10 s) also bounds the TLS and WebSocket handshakes: it guards a
        # server against slow clients, while here the client shares a loaded machine with it.
        # Tests of that deadline set their own.
        overrides.setdefault("header_timeout_s", 60.0)
        self.settings = load_settings(
            None,
            host="127.0.0.1",
            port=0,
            websocket_port=0,
            grpc_server_port=0,
            grpc_metrics_port=0,
            **overrides,
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.system = self.call(self._start())

    async def _start(self):
        from lipstream.serve import start_system

        return await start_system(self.settings)

    def call(self, coroutine, timeout: float = 120.0):
        """Run a coroutine on the system's event loop and wait for its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def websocket_url(self) -> str:
        return self.system.websocket_url

    @property
    def web_url(self) -> str:
        return self.system.web_url

    def stop(self) -> None:
        try:
            self.call(self.system.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder with the demo avatar and a second package of it named demo_b."""
    root = tmp_path_factory.mktemp("models")
    (root / "demo").symlink_to(DEMO_PACKAGE)
    copy_package(DEMO_PACKAGE, root / "demo_b", "demo_b")
    return root


@pytest.fixture(scope="session")
def running_system(models_dir):
    """The whole system on free loopback ports, serving the demo avatar (and demo_b)."""
    system = BackgroundSystem(models_dir=models_dir)
    yield system
    system.stop()


@pytest.fixture
def start_system():
    """Start a fresh system of one's own (``start_system(**settings)``); stopped afterwards."""
    started: list[BackgroundSystem] = []

    def start(**overrides) -> BackgroundSystem:
        system = BackgroundSystem(**overrides)
        started.append(system)
        return system

    yield start
    for system in started:
        system.stop()
