"""Fixtures for the browser console tests: the real system, a fake OpenAI, headless Chromium.

They live as long as the test module: Playwright's synchronous API keeps an event loop marked
running in the main thread while the browser is open, which other tests' asyncio.run() refuse.

Everything runs inside a private network namespace (testkit.network): WebRTC skips loopback
addresses, and the OpenAI test makes a real WebRTC call. The three services run as the
commands a user starts (``lipstream grpc``, ``frames``, ``web``) on their default ports in that
namespace, so a test can stop and restart one; the fake OpenAI runs on a loop thread that moved
into it; Debian's Chromium is launched into it by Playwright through a small wrapper.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from testkit.fake_openai import OPENAI_KEY, FakeOpenAI, serve_fake_openai
from testkit.loop import LoopThread
from testkit.network import TestNetwork

from lipstream.bench_serve import stop_process
from lipstream.bench_sync import CHROMIUM_ARGS as BENCH_CHROMIUM_ARGS
from lipstream.bench_sync import write_capture

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
WEB_PORT, WEBSOCKET_PORT, GRPC_PORT = 3000, 8080, 50051
CONSOLE_URL = f"http://127.0.0.1:{WEB_PORT}/index.html"
# What the benchmark starts Chromium with (no sandbox as root, no network of its own, media
# without prompts), and WebRTC candidates with plain addresses for the fake OpenAI's peer.
CHROMIUM_ARGS = [*BENCH_CHROMIUM_ARGS, "--disable-features=WebRtcHideLocalIpsWithMdns"]


class Service:
    """One lipstream command running inside the test network, ready once it printed its line."""

    READY = {
        "grpc": "Service ready for inference",
        "frames": "WebSocket server started on",
        "web": "Browser access:",
    }

    def __init__(self, network: TestNetwork, command: str, env: dict[str, str], cwd: Path):
        self.command = command
        self.output: list[str] = []
        argv = network.command(sys.executable, "-m", "lipstream.cli", command)
        self.process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line.rstrip())
                if self.READY[command] in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError(f"lipstream {command} did not start:\n" + "\n".join(self.output))

    def stop(self) -> None:
        stop_process(self.process)


class ConsoleSystem:
    """The three services in the test network; ``restart(name)`` stops and starts one."""

    def __init__(self, network: TestNetwork, models_dir: Path, workdir: Path, openai_url: str):
        self.network = network
        self.workdir = workdir
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(WEB_PORT),
            "WEBSOCKET_PORT": str(WEBSOCKET_PORT),
            "GRPC_SERVER_PORT": str(GRPC_PORT),
            "GRPC_METRICS_PORT": "0",
            "MODELS_DIR": str(models_dir),
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": openai_url,
            "RECORDINGS_DIR": str(workdir / "recordings"),
            "HEADER_TIMEOUT_S": "60",  # the handshakes' deadline: see BackgroundSystem
        }
        self.services: dict[str, Service] = {}
        for name in ("grpc", "frames", "web"):
            self.start(name)

    def start(self, name: str, key: str | None = None, **env: str | None) -> Service:
        """Start service ``name`` (kept as ``key``); ``env`` changes its settings (None: unset)."""
        settings = {**self.env, **env}
        service = Service(
            self.network, name, {k: v for k, v in settings.items() if v is not None}, self.workdir
        )
        self.services[key or name] = service
        return service

    def stop(self, key: str) -> None:
        self.services.pop(key).stop()

    def ensure_running(self) -> None:
        """Start again whichever of the three a test stopped (and did not restart)."""
        for name in ("grpc", "frames", "web"):
            if name not in self.services:
                self.start(name)

    def close(self) -> None:
        for name in list(self.services)[::-1]:
            self.stop(name)


@pytest.fixture(scope="module")
def test_network() -> Iterator[TestNetwork]:
    network = TestNetwork()
    yield network
    network.delete()


@pytest.fixture(scope="module")
def network_loop(test_network: TestNetwork) -> Iterator[LoopThread]:
    """An event loop whose sockets open inside the test network."""
    loop = LoopThread(on_start=test_network.enter)
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def fake_openai(network_loop: LoopThread) -> Iterator[FakeOpenAI]:
    with serve_fake_openai(network_loop) as fake:
        yield fake


@pytest.fixture(scope="module")
def console_models_dir(models_dir, tmp_path_factory) -> Path:
    """The demo, demo_b and the low-latency demo-65ms: two feature layouts side by side."""
    from conftest import LOW_LATENCY_PACKAGE

    root = tmp_path_factory.mktemp("console-models")
    for package in models_dir.iterdir():
        (root / package.name).symlink_to(package.resolve())
    (root / LOW_LATENCY_PACKAGE.name).symlink_to(LOW_LATENCY_PACKAGE)
    return root


@pytest.fixture(scope="module")
def console_system(
    test_network, fake_openai, console_models_dir, tmp_path_factory
) -> Iterator[ConsoleSystem]:
    """The whole system with the demo avatar (and demo_b, demo-65ms), OpenAI pointed at the
    fake."""
    system = ConsoleSystem(
        test_network,
        console_models_dir,
        tmp_path_factory.mktemp("console-system"),
        fake_openai.url,
    )
    yield system
    system.close()


@pytest.fixture
def system(console_system) -> Iterator[ConsoleSystem]:
    """The console system, for a test that stops a service: it runs again afterwards."""
    yield console_system
    console_system.ensure_running()


@pytest.fixture(scope="module")
def speech_capture(speech_wav, tmp_path_factory) -> Path:
    """The fake microphone's recording: the test speech, then a second of silence, looped."""
    return write_capture(speech_wav, tmp_path_factory.mktemp("capture"))


@pytest.fixture(scope="module")
def browser(test_network, speech_capture, tmp_path_factory):
    """Debian's Chromium, headless, in the test network, driven by Playwright."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    wrapper = test_network.wrapper(str(CHROMIUM), tmp_path_factory.mktemp("chromium"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(wrapper),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={speech_capture}"],
        )
        yield browser
        browser.close()


class ConsolePage:
    """One tab of the console, with what its console printed and the page's test hook."""

    def __init__(self, page) -> None:
        self.page = page
        self.messages: list[str] = []  # console errors and uncaught exceptions
        page.on(
            "console",
            lambda m: (
                self.messages.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.messages.append(f"uncaught: {e}"))

    def open(self, url: str = CONSOLE_URL) -> ConsolePage:
        """Load the console and wait for the avatar and the frame generator."""
        self.page.goto(url)
        self.wait_for("s => s.modelReady && s.drawn && s.connections.frameGenerator === 'open'", 60)
        return self

    def state(self) -> dict:
        return self.page.evaluate("window.lipstream.state()")

    def stats(self) -> dict:
        return self.page.evaluate("window.lipstream.stats()")

    def wait_for(self, condition: str, timeout: float = 30) -> dict:
        """Wait until ``condition`` (a JS function of the state) holds; the state then."""
        self.page.wait_for_function(
            f"window.lipstream && ({condition})(window.lipstream.state())",
            timeout=timeout * 1000,
            polling=20,
        )
        return self.state()

    def snapshot(self, region_bounds=None) -> Snapshot:
        """What the canvas shows now, compared with the avatar's own frame it was drawn on.

        The comparison runs in the page (no image encoding, so the page under test is barely
        disturbed); the pixels of the mouth box, or of ``region_bounds``, come back too.
        """
        return Snapshot(self.page.evaluate(_SNAPSHOT_JS, region_bounds))

    def until(self, predicate, timeout: float = 30, step: float = 0.05):
        """Poll ``predicate`` (a Python function) until it returns something true; that value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(step)
        raise AssertionError(f"not within {timeout} s; console said: {self.messages}")

    def say(self, text: str) -> None:
        self.page.click("#tab-text")
        self.page.fill("#say-text", text)
        self.page.click("#say")


_SNAPSHOT_JS = """(regionBounds) => {
  const s = window.lipstream.snapshot();
  const plain = window.lipstream.avatarFrame(s.frameId);
  const { width: w, height: h, data: a } = s.image;
  const b = plain.data;
  const a32 = new Uint32Array(a.buffer), b32 = new Uint32Array(b.buffer);
  const boxOf = (bounds) => bounds && bounds.map((v) => Math.round(v * s.scale));
  const box = boxOf(s.bounds);
  let insideSum = 0, insideCount = 0, outsideMax = 0, identical = true;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const inside = box && x >= box[0] && x < box[2] && y >= box[1] && y < box[3];
      if (inside) insideCount += 3;
      if (a32[p] === b32[p]) continue;  // the same pixel: the common case, one comparison
      identical = false;
      for (let c = 0; c < 3; c++) {
        const d = Math.abs(a[4 * p + c] - b[4 * p + c]);
        if (inside) insideSum += d; else if (d > outsideMax) outsideMax = d;
      }
    }
  }
  const r = boxOf(regionBounds || s.bounds);
  let region = '';
  if (r) {
    const out = [];
    for (let y = r[1]; y < r[3]; y++) {
      for (let x = r[0]; x < r[2]; x++) {
        const i = (y * w + x) * 4;
        out.push(String.fromCharCode(a[i], a[i + 1], a[i + 2]));
      }
    }
    region = btoa(out.join(''));
  }
  return {
    model: s.model, frameId: s.frameId, mouth: s.mouth, bounds: s.bounds, identical,
    mouthDifference: insideCount ? insideSum / insideCount : 0, outsideMax, region,
    regionShape: r ? [r[3] - r[1], r[2] - r[0], 3] : null,
  };
}"""


class Snapshot:
    """A canvas capture compared with its avatar frame, and the pixels of its mouth region."""

    def __init__(self, shot: dict) -> None:
        self.model = shot["model"]
        self.frame_id = shot["frameId"]
        self.mouth = shot["mouth"]
        self.bounds = shot["bounds"]
        self.identical = shot["identical"]  # the canvas is exactly the avatar's own frame
        self.mouth_difference = shot["mouthDifference"]  # mean |canvas - frame| in the box
        self.outside_difference = shot["outsideMax"]  # largest |canvas - frame| outside it
        self.region = None
        if shot["regionShape"]:
            raw = np.frombuffer(base64.b64decode(shot["region"]), np.uint8)
            self.region = raw.reshape(shot["regionShape"]).astype(np.int16)


@pytest.fixture
def open_console(browser, console_system):
    """``open_console(url)``: a fresh tab (its own storage) of the console at ``url``, loaded."""
    contexts = []

    def open_tab(url: str = CONSOLE_URL) -> ConsolePage:
        context = browser.new_context(viewport={"width": 1360, "height": 860})
        context.grant_permissions(["microphone"])
        contexts.append(context)
        return ConsolePage(context.new_page()).open(url)

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def console(open_console) -> ConsolePage:
    """A fresh tab of the console, loaded, with the demo avatar ready."""
    return open_console()
