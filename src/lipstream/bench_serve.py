"""The system a benchmark measures: ``lipstream serve`` on free ports, in a child process.

The benchmarks (``bench e2e``, ``bench sync``) start one unless given the URL of a running
system. It is up once it prints its "lipstream is up" line; the frame generator's WebSocket URL
and the console's URL are read from its start-up lines.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from lipstream.errors import LipstreamError

_WEBSOCKET = re.compile(r"WebSocket server started on (ws://\S+)")
_UP = re.compile(r"lipstream is up: open (http://\S+)")
START_TIMEOUT_S = 120.0


# what each service prints once it is ready
READY_LINES = {
    "grpc": "Service ready for inference",
    "frames": "WebSocket server started",
    "web": "Browser access",
    "serve": "lipstream is up",
}


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(
    command: str,
    env: dict[str, str],
    timeout_s: float = START_TIMEOUT_S,
    started: list[str] | None = None,
):
    """``lipstream COMMAND`` as a child process with ``env``, once it says it is ready.

    ``started`` receives what it printed up to then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lipstream.cli", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if not wait_for_line(process, READY_LINES[command], timeout_s, started):
        stop_process(process)
        raise LipstreamError(
            f"lipstream {command} did not start within {timeout_s:.0f} s; run it to see why"
        )
    return process


def stop_process(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_line(
    process: subprocess.Popen[str],
    text: str,
    timeout_s: float,
    seen: list[str] | None = None,
) -> bool:
    """Whether ``process`` prints a line holding ``text`` on stdout within ``timeout_s``.

    Its output is read on a thread for as long as it runs, so a full pipe never blocks it;
    ``seen`` receives the lines read until then.
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return False
        if line is None:  # it exited
            return False
        if seen is not None:
            seen.append(line)
        if text in line:
            return True
    return False


class ServeProcess:
    """``lipstream serve`` on free ports, on ``models_dir``; ``stop()`` ends it."""

    def __init__(self, models_dir: Path, timeout_s: float = START_TIMEOUT_S) -> None:
        env = dict(os.environ, PORT="0", WEBSOCKET_PORT="0", GRPC_SERVER_PORT="0", HOST="127.0.0.1")
        env["GRPC_METRICS_PORT"] = "0"
        env["MODELS_DIR"] = str(models_dir)
        started: list[str] = []
        self.process = start_service("serve", env, timeout_s, started)
        output = "".join(started)
        websocket, up = _WEBSOCKET.search(output), _UP.search(output)
        if websocket is None or up is None:
            self.stop()
            raise LipstreamError("lipstream serve did not say where it listens")
        self.websocket_url = websocket.group(1)
        self.console_url = up.group(1)

    def stop(self) -> None:
        stop_process(self.process)
