"""Fixtures for the lip-sync service: a models folder, real servers on loopback, fake runtimes."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from lipstream.model.engine import OpenedModel
from lipstream.model.package import load_package
from lipstream.service import lipsync_pb2_grpc
from lipstream.service.registry import ModelRegistry
from lipstream.service.server import LipSyncServer, start_lipsync_server
from lipstream.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "models" / "demo"


@pytest.fixture(scope="session")
def service_models(tmp_path_factory) -> Path:
    """A models folder: a copy of the demo package, a broken package, a link leading outside."""
    root = tmp_path_factory.mktemp("service-models")
    shutil.copytree(DEMO, root / "demo")
    (root / "broken").mkdir()
    (root / "broken" / "manifest.json").write_text(json.dumps({"format": "something else"}))
    (root / "notes").mkdir()  # no manifest: not a package
    # a folder that resolves outside the models folder (no manifest: never loaded at start)
    (root / "escape").symlink_to(tmp_path_factory.mktemp("outside"), target_is_directory=True)
    return root


class LoopThread:
    """An asyncio event loop on a thread of its own, for servers the tests talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coroutine, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


class RunningServer:
    """A lip-sync server on a free loopback port, with a client channel to it."""

    def __init__(self, loop_thread: LoopThread, handle: LipSyncServer) -> None:
        self.handle = handle
        self._loop_thread = loop_thread
        self.channel = grpc.insecure_channel(handle.address)
        self.stub = lipsync_pb2_grpc.LipSyncServiceStub(self.channel)

    def stop(self) -> None:
        self.channel.close()
        self._loop_thread.call(self.handle.stop(1.0))


def start_server(loop_thread: LoopThread, models: Path, **overrides) -> RunningServer:
    registry = overrides.pop("registry", None)
    overrides.setdefault("grpc_metrics_port", 0)
    settings = load_settings(None, models_dir=models, host="127.0.0.1", **overrides)
    handle = loop_thread.call(start_lipsync_server(settings, port=0, registry=registry))
    return RunningServer(loop_thread, handle)


@pytest.fixture(scope="session")
def lipsync(loop_thread, service_models) -> Iterator[RunningServer]:
    """The service with the real demo model; a 20 ms batch window so callers share batches."""
    server = start_server(loop_thread, service_models, batch_window_ms=20.0)
    yield server
    server.stop()


@pytest.fixture
def make_server(loop_thread):
    """Starts more servers (stopped after the test): ``make_server(models_dir, **settings)``."""
    started: list[RunningServer] = []

    def make(models: Path, **overrides) -> RunningServer:
        started.append(start_server(loop_thread, models, **overrides))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def demo_package() -> Path:
    """The demo package of the repository (outside any test models folder)."""
    return DEMO


class FakeRuntime:
    """A deterministic generator painting flat grey: the top half 4 * (frame id % 64), the bottom
    half the mean of the frame's audio * 100 (flat grey survives JPEG to within a level or two).

    ``hold()`` makes the next ``generate`` calls wait (after setting ``entered``) until
    ``release()``; ``calls`` records the frame ids of every call.
    """

    name = "fake"
    width = 0.25

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def hold(self) -> None:
        self.entered.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def generate(self, frame_ids: Sequence[int], audio_windows: np.ndarray) -> np.ndarray:
        assert audio_windows.dtype == np.float32 and audio_windows.shape[1:] == (32, 16, 16)
        self.calls.append([int(i) for i in frame_ids])
        self.entered.set()
        assert self._gate.wait(30), "the test never released the fake runtime"
        out = np.zeros((len(frame_ids), 320, 320, 3), np.uint8)
        for k, (frame_id, audio) in enumerate(zip(frame_ids, audio_windows, strict=True)):
            out[k, :160] = 4 * (frame_id % 64)
            out[k, 160:] = np.clip(round(float(audio.mean()) * 100), 0, 255)
        return out

    @property
    def frame_ids_seen(self) -> set[int]:
        return {i for call in self.calls for i in call}


def zero_encoder(windows: np.ndarray) -> np.ndarray:
    return np.zeros((len(windows), 512), np.float32)


@pytest.fixture
def new_runtime():
    """Makes fake runtimes (each one a separate model to the batcher)."""
    return FakeRuntime


@pytest.fixture
def fake_runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def fake_registry(service_models, fake_runtime) -> ModelRegistry:
    """A registry of the models folder whose models all run on ``fake_runtime``."""

    def opener(folder: Path, runtime: str, device: str) -> OpenedModel:
        return OpenedModel(load_package(folder), fake_runtime, zero_encoder, "fake")

    return ModelRegistry(service_models, opener=opener)
