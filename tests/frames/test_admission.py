"""The frame generator's door over real sockets: tokens, session caps, metrics, slow clients."""

from __future__ import annotations

import json
import socket
import time
from unittest import mock

import pytest
from conftest import OPEN_TIMEOUT_S
from testkit.frames import receive
from testkit.prometheus import fetch, metric
from testkit.slow_client import trickle_until_closed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from lipstream.access.session_tokens import SessionTokens

SECRET = "frame generator test secret"


def http_base(websocket_url: str) -> str:
    return websocket_url.replace("ws://", "http://").rstrip("/")


@pytest.fixture(scope="module")
def guarded(models_dir):
    from conftest import BackgroundSystem

    system = BackgroundSystem(
        models_dir=models_dir, session_secret=SECRET, session_token_ttl_s=10, max_sessions_per_ip=2
    )
    yield system
    system.stop()


@pytest.mark.parametrize(
    "query, reason",
    [
        ("", "a session token is required"),
        ("?token=forged.token.value", "not signed by this server"),
    ],
)
def test_without_a_valid_token_the_upgrade_gets_401_with_the_reason(guarded, query, reason):
    with pytest.raises(InvalidStatus) as refused:
        connect(guarded.websocket_url + query, open_timeout=OPEN_TIMEOUT_S)
    assert refused.value.response.status_code == 401
    assert reason in refused.value.response.body.decode()


def test_an_expired_token_is_refused_and_a_fresh_one_lets_in(guarded):
    tokens = SessionTokens(SECRET, 10)
    with mock.patch("itsdangerous.timed.time.time", return_value=time.time() - 60):
        old, _ = tokens.issue()  # signed a minute ago: past the server's 10 s
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{guarded.websocket_url}?token={old}", open_timeout=OPEN_TIMEOUT_S)
    assert refused.value.response.status_code == 401
    assert "expired" in refused.value.response.body.decode()
    fresh, _ = tokens.issue()
    with connect(f"{guarded.websocket_url}?token={fresh}", open_timeout=OPEN_TIMEOUT_S) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert receive(ws, "pong")["type"] == "pong"


def test_one_address_gets_at_most_its_share_of_sessions(guarded):
    token = SessionTokens(SECRET, 10).issue()[0]
    url = f"{guarded.websocket_url}?token={token}"
    with (
        connect(url, open_timeout=OPEN_TIMEOUT_S) as a,
        connect(url, open_timeout=OPEN_TIMEOUT_S) as b,
    ):
        for ws in (a, b):
            ws.send(json.dumps({"type": "ping"}))
            receive(ws, "pong")
        with connect(url, open_timeout=OPEN_TIMEOUT_S) as third:
            error = receive(third, "error")
            assert error["code"] == "too_many_sessions"
            assert "MAX_SESSIONS_PER_IP" in error["message"]
    text = fetch(http_base(guarded.websocket_url) + "/metrics")
    assert metric(text, "lipstream_sessions_refused_total", reason="max_sessions_per_ip") == 1


def test_the_metrics_count_what_a_session_did(start_system, models_dir, speech_wav):
    from lipstream.audio.files import read_audio_file

    system = start_system(models_dir=models_dir)
    speech = read_audio_file(speech_wav, 24000).samples[:24000]  # one second: 25 frames
    with connect(system.websocket_url, open_timeout=OPEN_TIMEOUT_S) as ws:
        ws.send(json.dumps({"type": "configure", "push_frames": True}))
        receive(ws, "configured")
        ws.send(speech.astype("<i2").tobytes())
        ws.send(json.dumps({"type": "end_of_speech"}))
        frames = [receive(ws, "current_frame") for _ in range(25)]
        assert [f["frame_index"] for f in frames] == list(range(25))
        ws.send(json.dumps({"type": "no_such_message"}))
        assert receive(ws, "error")["code"] == "unknown_type"
        frames_text = fetch(http_base(system.websocket_url) + "/metrics")
        assert metric(frames_text, "lipstream_sessions_active") == 1
    assert metric(frames_text, "lipstream_sessions_opened_total") == 1
    assert metric(frames_text, "lipstream_frames_made_total") == 25
    assert metric(frames_text, "lipstream_frames_sent_total") == 25
    assert metric(frames_text, "lipstream_frame_latency_seconds_count") == 25
    assert metric(frames_text, "lipstream_errors_total", code="unknown_type") == 1
    assert metric(frames_text, "lipstream_lipsync_reachable") == 1
    assert metric(frames_text, "lipstream_pipeline_latency_seconds") > 0.45
    lipsync = system.system.lipsync
    grpc_text = fetch(f"http://127.0.0.1:{lipsync.metrics_server.port}/metrics")
    assert metric(grpc_text, "lipstream_frames_made_total") == 25
    assert metric(grpc_text, "lipstream_models_loaded") == 2
    assert metric(grpc_text, "lipstream_batch_frames_sum") == 25
    assert metric(grpc_text, "lipstream_queue_seconds_count") >= 5  # 25 frames, <= 5 per job
    assert metric(grpc_text, "lipstream_lipsync_requests_total", rpc="ListModels", code="OK") >= 1
    calls = metric(grpc_text, "lipstream_lipsync_requests_total", rpc="StreamLipSync", code="OK")
    assert calls == metric(grpc_text, "lipstream_queue_seconds_count")
    assert "\nlipstream_streams_active " in grpc_text  # the gauge is there
    assert metric(grpc_text, "lipstream_streams_active") <= 1


def test_a_client_that_never_reads_is_cut_off_alone(start_system, models_dir, speech_wav):
    import numpy as np

    from lipstream.audio.files import read_audio_file

    system = start_system(models_dir=models_dir, client_send_timeout_s=1.0)
    speech = np.tile(read_audio_file(speech_wav, 24000).samples, 8)  # about 25 s
    host, port = system.websocket_url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
    # a raw socket with a tiny window that upgrades, asks for pushed frames, then never reads
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect((host, int(port)))
    raw.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    raw.sendall(_masked_text(json.dumps({"type": "configure", "push_frames": True})))
    page = http_base(system.websocket_url) + "/metrics"
    cut = False
    deadline = time.monotonic() + 60
    for at in range(0, len(speech), 960):  # 40 ms chunks at four times real time
        if time.monotonic() > deadline:
            break
        try:
            raw.sendall(_masked_binary(speech[at : at + 960].astype("<i2").tobytes()))
        except OSError:  # the server cut the connection
            cut = True
            break
        time.sleep(0.01)
        if at % (960 * 25) == 0 and metric(
            fetch(page), "lipstream_errors_total", code="client_too_slow"
        ):
            cut = True
            break
    assert cut, "the server kept a client that never reads"
    with connect(system.websocket_url, open_timeout=OPEN_TIMEOUT_S) as other:  # the others go on
        other.send(json.dumps({"type": "ping"}))
        assert receive(other, "pong")["type"] == "pong"
        text = fetch(page)
        assert metric(text, "lipstream_errors_total", code="client_too_slow") == 1
        until = time.monotonic() + 10
        while metric(text, "lipstream_sessions_active") > 1 and time.monotonic() < until:
            time.sleep(0.1)
            text = fetch(page)
        assert metric(text, "lipstream_sessions_active") == 1  # only the reader is left
    raw.close()


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _masked_text(text: str) -> bytes:
    return _frame(0x1, text.encode())


def _masked_binary(data: bytes) -> bytes:
    return _frame(0x2, data)


def test_a_handshake_sent_byte_by_byte_is_cut_off(start_system, models_dir):
    system = start_system(models_dir=models_dir, header_timeout_s=1.0)
    host, port = system.websocket_url.removeprefix("ws://").rstrip("/").rsplit(":", 1)
    assert trickle_until_closed(host, int(port), 20.0) < 10.0
