"""``lipstream grpc``: the guide's start-up lines, a serving health check, a clean stop."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipstream.bench_serve import free_port
from lipstream.cli import build_parser

GUIDE_LINES = [
    "gRPC Lip Sync Service starting on port {port}",
    "Loading models...",
    "Service ready for inference",
]


def test_the_command_takes_the_settings_overrides():
    args = build_parser().parse_args(
        ["grpc", "--models-dir", "m", "--port", "6000", "--runtime", "onnx-fp32"]
    )
    assert (str(args.models_dir), args.port, args.runtime, args.host) == (
        "m",
        6000,
        "onnx-fp32",
        None,
    )


def test_grpc_command_starts_serves_and_stops_on_sigterm(tmp_path, demo_package):
    models = tmp_path / "models"
    models.mkdir()
    (models / "demo").symlink_to(demo_package)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("LIPSTREAM_ENV_FILE", "MODELS_DIR")}
    env["LOG_DIR"] = str(tmp_path / "logs")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lipstream.cli",
            "grpc",
            "--port",
            str(port),
            "--models-dir",
            str(models),
        ],
        cwd=tmp_path,  # no .env here
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout])
    reader.start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while GUIDE_LINES[-1] not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no start-up line {GUIDE_LINES[-1]!r} within 120 s: {seen}"
            seen.append(lines.get(timeout=left))
        startup = [line for line in seen if line in [g.format(port=port) for g in GUIDE_LINES]]
        assert startup == [g.format(port=port) for g in GUIDE_LINES]

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
    log = (tmp_path / "logs" / "grpc_server.log").read_text()
    assert "loaded model demo" in log and "stopped" in log
