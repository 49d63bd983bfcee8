"""Two lip-sync processes behind one frame generator, on gRPC's own round robin: one is killed
with SIGKILL mid-utterance and the session goes on; restarted, it takes new streams again."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from conftest import OPEN_TIMEOUT_S
from testkit.loop import LoopThread
from testkit.prometheus import fetch, metric
from websockets.sync.client import connect

from lipstream.audio.files import read_audio_file
from lipstream.bench_serve import free_port, start_service, stop_process
from lipstream.frames.protocol import parse_binary_frame
from lipstream.frames.server import start_frame_server
from lipstream.settings import load_settings


class Instance:
    """``lipstream grpc`` in a process of its own, with its metrics port."""

    def __init__(self, models_dir, port: int | None = None) -> None:
        self.port = port or free_port()
        self.metrics_port = free_port()
        env = dict(
            os.environ,
            HOST="127.0.0.1",
            MODELS_DIR=str(models_dir),
            GRPC_SERVER_PORT=str(self.port),
            GRPC_METRICS_PORT=str(self.metrics_port),
        )
        self.process = start_service("grpc", env)

    def streams(self) -> float:
        text = fetch(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return metric(text, "lipstream_lipsync_requests_total", rpc="StreamLipSync", code="OK")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def two_instances(models_dir):
    started = [Instance(models_dir), Instance(models_dir)]
    yield started
    for instance in started:
        instance.stop()


def stream_utterance(url: str, speech: np.ndarray, on_chunk=None) -> list[tuple[int, float]]:
    """Stream speech at real-time pace; (frame index, arrival time) of every frame."""
    got: list[tuple[int, float]] = []
    with connect(url, open_timeout=OPEN_TIMEOUT_S, max_size=None) as ws:
        ws.send(json.dumps({"type": "configure", "push_frames": True, "binary_frames": True}))
        start = time.monotonic()
        for i, at in enumerate(range(0, len(speech), 960)):
            if on_chunk is not None:
                on_chunk(i)
            time.sleep(max(0.0, start + 0.04 * (i + 1) - time.monotonic()))
            ws.send(speech[at : at + 960].astype("<i2").tobytes())
            got += _drain(ws, 0.0)
        ws.send(json.dumps({"type": "end_of_speech"}))
        expected = -(-len(speech) // 960)
        deadline = time.monotonic() + 30
        while len(got) < expected and time.monotonic() < deadline:
            got += _drain(ws, 0.5)
    return got


def _drain(ws, wait: float) -> list[tuple[int, float]]:
    out = []
    while True:
        try:
            raw = ws.recv(timeout=wait)
        except TimeoutError:
            return out
        wait = 0.0
        if isinstance(raw, bytes):
            header, _ = parse_binary_frame(raw)
            out.append((header["frame_index"], time.monotonic()))
        else:
            message = json.loads(raw)
            assert message["type"] != "error" or message["code"] == "lipsync_unavailable", message


def test_a_killed_instance_costs_a_session_no_frames_and_rejoins(
    two_instances, models_dir, speech_wav
):
    a, b = two_instances
    speech = np.tile(read_audio_file(speech_wav, 24000).samples, 2)  # about 6 s
    settings = load_settings(
        None,
        host="127.0.0.1",
        websocket_port=0,
        grpc_server_address=f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}",
    )
    loop = LoopThread()
    frames = loop.run(start_frame_server(settings))
    url = f"ws://127.0.0.1:{frames.port}/"
    killed: list[Instance] = []

    def kill_the_serving_one(chunk: int) -> None:
        if chunk == 50:  # two seconds in
            serving = a if a.streams() else b
            serving.kill()
            killed.append(serving)

    try:
        got = stream_utterance(url, speech, kill_the_serving_one)
        assert killed, "the utterance ended before the kill"
        indices = [k for k, _ in got]
        assert indices == list(range(-(-len(speech) // 960)))  # every frame, in order
        times = [t for _, t in got]
        gaps = np.diff(times[: int(0.9 * len(times))])  # while speech streamed
        assert gaps.max() < 2.0, f"a stall of {gaps.max():.2f} s"

        # the killed instance comes back on its port and takes new streams again
        back = Instance(models_dir, port=killed[0].port)
        two_instances.append(back)
        short = speech[:24000]
        for _ in range(4):
            assert len(stream_utterance(url, short)) == 25
            if back.streams():
                break
        assert back.streams() > 0, "the restarted instance was never used"
    finally:
        loop.run(frames.stop())
        loop.close()
