"""The frame generator over real loopback sockets, with the real lip-sync service and demo."""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import simplejpeg
from conftest import OPEN_TIMEOUT_S
from testkit.frames import receive
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lipstream.audio.files import read_audio_file
from lipstream.frames import protocol
from lipstream.model.engine import resolve_runtime
from lipstream.model.package import load_package

RATE = 24000
CHUNK = RATE // 25  # 40 ms at 24 kHz, as AUDIO_CHUNK_DURATION_MS=40


@pytest.fixture(scope="module")
def speech24k(speech_wav) -> np.ndarray:
    audio = read_audio_file(speech_wav, RATE)
    return audio.samples


def open_session(system, **kwargs):
    return connect(system.websocket_url, compression=None, open_timeout=OPEN_TIMEOUT_S, **kwargs)


def ask(ws, message: dict, kind: str, timeout: float = 20.0) -> dict:
    ws.send(json.dumps(message))
    return receive(ws, kind, timeout)


def stream(ws, samples: np.ndarray, realtime: bool = True, binary: bool = False) -> None:
    """Send 40 ms chunks, paced by the clock at real time (or as fast as possible)."""
    start = time.monotonic()
    for i, at in enumerate(range(0, len(samples), CHUNK)):
        if realtime:
            time.sleep(max(0.0, start + 0.04 * (i + 1) - time.monotonic()))
        data = samples[at : at + CHUNK].astype("<i2").tobytes()
        if binary:
            ws.send(data)
        else:
            ws.send(
                json.dumps({"type": "audio_chunk", "audio_data": base64.b64encode(data).decode()})
            )


def drain_frames(ws, expected: int, timeout: float = 60.0) -> list[dict]:
    """Poll get_frame (the guide's way) until ``expected`` frames have come."""
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(frames) < expected and time.monotonic() < deadline:
        reply = ask(ws, {"type": "get_frame"}, "current_frame")
        if reply["idle"]:
            time.sleep(0.02)
        else:
            frames.append(reply)
    return frames


def decode(frame: dict) -> np.ndarray:
    return simplejpeg.decode_jpeg(base64.b64decode(frame["frame_data"]))


def check_frame(frame: dict, width: int = 512, height: int = 512) -> None:
    image = simplejpeg.decode_jpeg(base64.b64decode(frame["frame_data"]))
    assert image.shape == (320, 320, 3)
    xmin, ymin, xmax, ymax = frame["bounds"]
    assert 0 <= xmin < xmax <= width and 0 <= ymin < ymax <= height
    assert frame["prediction_shape"] == "320x320x3"


def test_real_speech_at_real_time_pace_gives_one_frame_per_40ms(
    running_system, speech24k, demo_package
):
    with open_session(running_system) as ws:
        stream(ws, speech24k)
        ended = ask(ws, {"type": "end_of_speech"}, "speech_ended")
        expected = math.ceil(len(speech24k) / CHUNK)
        assert ended["next_frame_index"] == expected
        frames = drain_frames(ws, expected)
        assert [f["frame_index"] for f in frames] == list(range(expected))
        for frame in frames:
            check_frame(frame)
            assert frame["model_name"] == "demo"
        # the mouth follows the speech: frames differ from those made of silence
        with open_session(running_system) as quiet:
            stream(quiet, np.zeros_like(speech24k), realtime=False, binary=True)
            ask(quiet, {"type": "end_of_speech"}, "speech_ended")
            silent = drain_frames(quiet, expected)
        assert [f["frame_id"] for f in silent] == [f["frame_id"] for f in frames]
        mouth = (slice(80, 240), slice(80, 200))  # where the demo avatar's lips are in a crop
        change = [
            np.abs(decode(f).astype(float)[mouth] - decode(q)[mouth]).mean()
            for f, q in zip(frames, silent, strict=True)
        ]
        assert np.percentile(change, 90) > 4.0, "the mouth does not move with the speech"
        stats = ask(ws, {"type": "get_stats"}, "stats")
        assert stats["frames_generated"] == expected and stats["frames_dropped"] == 0
        assert stats["frame_buffer_fill"] == 0 and stats["audio_buffer_fill"] == 0
        assert stats["lipsync_service"] == "connected" and stats["can_generate"] is True
        assert stats["latency_ms"]["p95"] is not None
        assert stats["pipeline_latency_ms"] > stats["lookahead_ms"] > 450
        assert stats["runtime"] == resolve_runtime(load_package(demo_package), "auto", "cpu")


def test_two_sessions_at_once_stay_independent(running_system, speech24k):
    with open_session(running_system) as a, open_session(running_system) as b:
        ask(a, {"type": "configure", "push_frames": True}, "configured")
        ask(b, {"type": "configure", "push_frames": True}, "configured")
        half = speech24k[: len(speech24k) // 2]
        for at in range(0, len(half), CHUNK):  # interleaved, binary audio
            a.send(speech24k[at : at + CHUNK].astype("<i2").tobytes())
            b.send(half[at : at + CHUNK].astype("<i2").tobytes())
        stream(a, speech24k[len(half) :], realtime=False, binary=True)
        ask(b, {"type": "end_of_speech"}, "speech_ended")
        ask(a, {"type": "end_of_speech"}, "speech_ended")
        got_a = [receive(a, "current_frame") for _ in range(math.ceil(len(speech24k) / CHUNK))]
        got_b = [receive(b, "current_frame") for _ in range(math.ceil(len(half) / CHUNK))]
        assert [f["frame_index"] for f in got_a] == list(range(len(got_a)))
        assert [f["frame_index"] for f in got_b] == list(range(len(got_b)))
        # the same audio gives the same frames in both sessions: b's first frames match a's
        early = [
            f["frame_data"] == g["frame_data"] for f, g in zip(got_a[:20], got_b[:20], strict=True)
        ]
        assert sum(early) >= 18
        assert (
            ask(a, {"type": "get_stats"}, "stats")["session_id"]
            != ask(b, {"type": "get_stats"}, "stats")["session_id"]
        )


def test_set_model_switches_the_frames_model(running_system, speech24k):
    with open_session(running_system) as ws:
        changed = ask(ws, {"type": "set_model", "model_name": "demo_b"}, "model_changed")
        assert changed["model_name"] == "demo_b" and changed["frame_count"] == 250
        assert changed["video_url"] == "/api/model-video/demo_b"
        stream(ws, speech24k[: RATE // 2], realtime=False)
        ask(ws, {"type": "end_of_speech"}, "speech_ended")
        frames = drain_frames(ws, 13)
        assert {f["model_name"] for f in frames} == {"demo_b"}
        assert ask(ws, {"type": "get_stats"}, "stats")["current_model"] == "demo_b"
        error = ask(ws, {"type": "set_model", "model_name": "nobody"}, "error")
        assert error["code"] == "unknown_model" and "demo_b" in error["message"]


def test_interrupt_empties_the_buffers_at_once(running_system, speech24k):
    with open_session(running_system) as ws:
        stream(ws, speech24k[: 2 * RATE], realtime=False)
        time.sleep(0.5)  # let some frames be made
        reply = ask(ws, {"type": "interrupt"}, "interrupted")
        assert reply["dropped_frames"] + reply["dropped_audio_ms"] > 0
        assert reply["next_frame_index"] == 50
        stats = ask(ws, {"type": "get_stats"}, "stats")
        assert stats["audio_buffer_fill"] == 0 and stats["frame_buffer_fill"] == 0
        assert ask(ws, {"type": "get_frame"}, "current_frame")["idle"] is True
        # no frame of the interrupted speech arrives later; new speech starts at frame 50
        stream(ws, speech24k[: RATE // 5], realtime=False)
        ask(ws, {"type": "end_of_speech"}, "speech_ended")
        frames = drain_frames(ws, 5)
        assert [f["frame_index"] for f in frames] == [50, 51, 52, 53, 54]


@pytest.mark.parametrize(
    ("message", "code", "named"),
    [
        ("{not json", "bad_json", "JSON"),
        ("[1, 2]", "bad_json", "object"),
        ('{"type": "dance"}', "unknown_type", "audio_chunk"),
        ('{"type": "audio_chunk", "audio_data": "***"}', "bad_audio", "base64"),
        ('{"type": "audio_chunk", "audio_data": "AAAA"}', "bad_audio", "odd"),
        ('{"type": "audio_chunk"}', "bad_field", "audio_data"),
        ('{"type": "set_model"}', "bad_field", "model_name"),
        ('{"type": "configure", "push_frames": "yes"}', "bad_field", "push_frames"),
        ('{"type": "configure", "audio_sample_rate": 5}', "bad_field", "sample_rate"),
    ],
)
def test_bad_messages_get_a_clear_error_and_the_session_goes_on(
    running_system, message, code, named
):
    with open_session(running_system) as ws:
        ws.send(message)
        error = receive(ws, "error")
        assert error["code"] == code
        assert named.lower() in error["message"].lower()
        assert ask(ws, {"type": "get_stats"}, "stats")["type"] == "stats"


def test_odd_binary_audio_and_overflow_are_refused(running_system, speech24k):
    with open_session(running_system) as ws:
        ws.send(b"\x01\x02\x03")
        assert receive(ws, "error")["code"] == "bad_audio"
        ws.send(np.zeros(4 * RATE, np.int16).tobytes())  # 4 s at once: past AUDIO_BUFFER_SIZE
        error = receive(ws, "error")
        assert error["code"] == "audio_buffer_full" and "3000 ms" in error["message"]
        assert ask(ws, {"type": "get_stats"}, "stats")["audio_buffer_fill"] == 0


def test_an_oversized_message_closes_only_its_own_connection(running_system, speech24k):
    with open_session(running_system) as other:
        with open_session(running_system) as ws:
            ws.send(b"\x00" * (5 * 1024 * 1024))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        stream(other, speech24k[: RATE // 2], realtime=False)
        ask(other, {"type": "end_of_speech"}, "speech_ended")
        assert len(drain_frames(other, 13)) == 13


def test_plain_http_get_says_websocket(running_system):
    url = running_system.websocket_url.replace("ws://", "http://")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=5)
    assert answer.value.code == 426
    assert "WebSocket" in answer.value.read().decode()


def test_frames_resume_by_themselves_when_the_lipsync_service_restarts(
    start_system, models_dir, speech24k
):
    from lipstream.service.server import start_lipsync_server

    system = start_system(models_dir=models_dir)
    with open_session(system) as ws:
        ask(ws, {"type": "configure", "push_frames": True}, "configured")
        stream(ws, speech24k[: RATE // 2], realtime=False)
        ask(ws, {"type": "end_of_speech"}, "speech_ended")
        assert [receive(ws, "current_frame")["frame_index"] for _ in range(13)] == list(range(13))
        port = system.system.lipsync.port
        system.call(system.system.lipsync.stop())

        stream(ws, speech24k[RATE // 2 : RATE], realtime=False)
        ask(ws, {"type": "end_of_speech"}, "speech_ended")
        error = receive(ws, "error")
        assert error["code"] == "lipsync_unavailable"
        assert "retrying" in error["message"]
        assert ask(ws, {"type": "get_stats"}, "stats")["lipsync_service"] == "unavailable"

        system.system.lipsync = system.call(start_lipsync_server(system.settings, port=port))
        resumed = [receive(ws, "current_frame", timeout=30) for _ in range(13)]
        assert [f["frame_index"] for f in resumed] == list(range(13, 26))
        assert ask(ws, {"type": "get_stats"}, "stats")["lipsync_service"] == "connected"


def test_a_poll_client_gets_every_frame_of_a_clip_longer_than_the_audio_buffer(
    start_system, models_dir, speech24k
):
    """The guide's client: audio_chunk at real-time pace without reading, then get_frame polls.

    The frame buffer fills first (AUDIO_BUFFER_SIZE / 40 frames), then the audio buffer, and
    chunks past it are refused. Taking frames must wake the generator, so every accepted chunk
    still becomes frames.
    """
    system = start_system(models_dir=models_dir, audio_buffer_size=1000)
    seen: list[dict] = []
    with open_session(system) as ws:
        stream(ws, speech24k)  # 3 s: the frame buffer holds 1 s, the audio buffer 1 s more
        ws.send(json.dumps({"type": "end_of_speech"}))
        ended = receive(ws, "speech_ended", seen=seen)
        frames: list[dict] = []
        deadline = time.monotonic() + 60
        expected = None
        while time.monotonic() < deadline:
            ws.send(json.dumps({"type": "get_frame"}))
            reply = receive(ws, "current_frame", seen=seen)
            if expected is None:  # every reply to the audio came before speech_ended's
                refused = [m for m in seen if m["type"] == "error"]
                accepted = len(speech24k) - sum(
                    round(m["refused_audio_ms"] * RATE / 1000) for m in refused
                )
                expected = math.ceil(accepted / CHUNK)
            if reply["idle"]:
                if len(frames) >= expected:
                    break
                time.sleep(0.04)
            else:
                frames.append(reply)
        ws.send(json.dumps({"type": "get_stats"}))
        stats = receive(ws, "stats", seen=seen)  # every message before it is in seen

    refused = [m for m in seen if m["type"] == "error"]
    assert refused, "the clip should have overflowed the 1000 ms audio buffer"
    last_chunk_ms = round(1000 * (len(speech24k) % CHUNK or CHUNK) / RATE, 1)
    for error in refused:
        assert error["code"] == "audio_buffer_full" and error["request_type"] == "audio_chunk"
        assert error["refused_audio_ms"] in (40.0, last_chunk_ms)
        assert "was not queued" in error["message"]
    assert ended["next_frame_index"] == expected
    assert [f["frame_index"] for f in frames] == list(range(expected))
    announced = sum(m["count"] for m in seen if m["type"] == "frames_generated")
    assert announced == expected
    assert stats["frames_generated"] == expected == stats["frames_sent"]
    assert stats["frame_buffer_fill"] == 0 and stats["audio_buffer_fill"] == 0


def test_binary_frames_carry_the_same_mouths_without_base64(running_system, speech24k):
    clip = speech24k[: RATE * 2]
    expected = math.ceil(len(clip) / CHUNK)
    with open_session(running_system) as json_ws:
        stream(json_ws, clip, realtime=False, binary=True)
        ask(json_ws, {"type": "end_of_speech"}, "speech_ended")
        as_json = drain_frames(json_ws, expected)
    with open_session(running_system) as ws:
        reply = ask(ws, {"type": "configure", "binary_frames": True}, "configured")
        assert reply["binary_frames"] is True and reply["push_frames"] is False
        # no frame yet: the idle answer stays JSON
        assert ask(ws, {"type": "get_frame"}, "current_frame")["idle"] is True
        stream(ws, clip, realtime=False, binary=True)
        ask(ws, {"type": "end_of_speech"}, "speech_ended")
        frames: list[tuple[dict, bytes]] = []
        deadline = time.monotonic() + 60
        while len(frames) < expected and time.monotonic() < deadline:
            ws.send(json.dumps({"type": "get_frame"}))
            message = ws.recv(timeout=20)
            if isinstance(message, bytes):
                frames.append(protocol.parse_binary_frame(message))
            elif json.loads(message).get("idle"):
                time.sleep(0.02)
    assert [h["frame_index"] for h, _ in frames] == list(range(expected))
    for (header, jpeg), reference in zip(frames, as_json, strict=True):
        assert header["type"] == "current_frame" and "frame_data" not in header
        assert header["frame_id"] == reference["frame_id"]
        assert header["bounds"] == reference["bounds"]
        assert jpeg == base64.b64decode(reference["frame_data"])  # the very same JPEG
        assert simplejpeg.decode_jpeg(jpeg).shape == (320, 320, 3)


def test_binary_frames_must_be_true_or_false(running_system):
    with open_session(running_system) as ws:
        error = ask(ws, {"type": "configure", "binary_frames": "yes"}, "error")
        assert error["code"] == "bad_field" and "binary_frames" in error["message"]
        assert ask(ws, {"type": "get_stats"}, "stats")["binary_frames"] is False
