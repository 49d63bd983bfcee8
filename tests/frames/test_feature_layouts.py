"""Two packages with different feature layouts served side by side: each model reports its own
lookahead, a session's frames wait for that model's audio only, and the delay the client is
told follows the model."""

from __future__ import annotations

import json
import time
import urllib.request

import grpc
import pytest
from conftest import OPEN_TIMEOUT_S, copy_package
from testkit.frames import receive
from websockets.sync.client import connect

from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.frames.protocol import parse_binary_frame
from lipstream.service import lipsync_pb2 as pb
from lipstream.service import lipsync_pb2_grpc as pb_grpc

FAST = FeatureLayout(13, 2, "frame_end")
RATE = 16000  # no resampler: the session's timeline is the features' own


@pytest.fixture(scope="module")
def two_layouts(tmp_path_factory, demo_package):
    """A models folder with the demo and a copy of it declaring the 145 ms layout."""
    root = tmp_path_factory.mktemp("layouts")
    (root / "demo").symlink_to(demo_package)
    fast = copy_package(demo_package, root / "fast", "fast")
    manifest = json.loads((fast / "manifest.json").read_text())
    manifest["audio"].update(
        layout=FAST.to_dict(), lookahead_ms=FAST.lookahead_ms, lookahead_frames=3
    )
    (fast / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def system(two_layouts):
    from conftest import BackgroundSystem

    started = BackgroundSystem(models_dir=two_layouts)
    yield started
    started.stop()


def test_each_model_reports_its_own_layout(system):
    address = f"127.0.0.1:{system.system.lipsync.port}"
    with grpc.insecure_channel(address) as channel:
        models = pb_grpc.LipSyncServiceStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
    by_name = {m.name: m for m in models.models}
    assert by_name["demo"].lookahead_ms == 452.5 and by_name["fast"].lookahead_ms == 145.0
    assert by_name["demo"].feature_alignment == "synctalk2d"
    assert (by_name["fast"].feature_alignment, by_name["fast"].feature_lookahead_frames) == (
        "frame_end",
        2,
    )
    with urllib.request.urlopen(f"{system.web_url}/api/models", timeout=10) as answer:
        catalog = {m["name"]: m for m in json.load(answer)}
    assert catalog["fast"]["lookahead_ms"] == 145.0
    assert catalog["fast"]["feature_layout"] == FAST.to_dict()
    assert catalog["demo"]["feature_layout"] == SYNCTALK2D.to_dict()


def _frames_for(ws, model: str, seconds: float) -> tuple[dict, int]:
    """Switch to ``model``, send ``seconds`` of audio at once (no end of speech), and count the
    frames made from it before they stop coming."""
    ws.send(json.dumps({"type": "set_model", "model_name": model}))
    receive(ws, "model_changed")
    configure = {"type": "configure", "push_frames": True, "binary_frames": True}
    ws.send(json.dumps({**configure, "audio_sample_rate": RATE}))
    configured = receive(ws, "configured")
    ws.send(bytes(int(seconds * RATE) * 2))  # silence is speech to the timeline
    frames, deadline, quiet_since = 0, time.monotonic() + 60, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.5:
        try:
            raw = ws.recv(timeout=0.25)
        except TimeoutError:
            continue
        if isinstance(raw, bytes) and not parse_binary_frame(raw)[0]["idle"]:
            frames += 1
            quiet_since = time.monotonic()
    return configured, frames


def test_a_session_waits_for_its_models_lookahead_only(system):
    with connect(system.websocket_url, compression=None, open_timeout=OPEN_TIMEOUT_S) as ws:
        demo, demo_frames = _frames_for(ws, "demo", 1.0)
    with connect(system.websocket_url, compression=None, open_timeout=OPEN_TIMEOUT_S) as ws:
        fast, fast_frames = _frames_for(ws, "fast", 1.0)
    # one second of audio makes the frames each layout can make from it, and no more (at
    # 16 kHz, with no resampler, the lookahead told is the layout's own)
    assert demo_frames == SYNCTALK2D.frames_ready(RATE) == 14
    assert fast_frames == FAST.frames_ready(RATE) == 22
    assert (demo["lookahead_ms"], fast["lookahead_ms"]) == (452.5, 145.0)


def test_the_delay_a_client_is_told_follows_the_model(system):
    with connect(system.websocket_url, compression=None, open_timeout=OPEN_TIMEOUT_S) as ws:
        ws.send(json.dumps({"type": "set_model", "model_name": "demo"}))
        demo = receive(ws, "model_changed")
        ws.send(json.dumps({"type": "set_model", "model_name": "fast"}))
        fast = receive(ws, "model_changed")
        ws.send(json.dumps({"type": "get_stats"}))
        stats = receive(ws, "stats")
    # the same processing estimate in one session: the delays differ by the lookaheads
    difference = demo["pipeline_latency_ms"] - fast["pipeline_latency_ms"]
    assert difference == pytest.approx(452.5 - 145.0, abs=0.2)
    # at the default 24 kHz the resampler adds its few ms to both
    assert stats["lookahead_ms"] == fast["lookahead_ms"] == pytest.approx(145.0, abs=25)
    assert stats["feature_layout"] == FAST.to_dict()
    assert stats["pipeline_latency_ms"] == fast["pipeline_latency_ms"]
