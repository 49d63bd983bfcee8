"""The lip-sync service over real loopback gRPC, with the real demo avatar."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from testkit.frames import decode_mouth

from lipstream.audio.timeline import SYNCTALK2D
from lipstream.model.engine import resolve_runtime
from lipstream.model.package import load_package
from lipstream.service import lipsync_pb2 as pb

first_sample_needed = SYNCTALK2D.first_sample_needed
samples_needed = SYNCTALK2D.samples_needed


def generate(lipsync, **fields) -> pb.BatchInferenceResponse:
    fields.setdefault("model_name", "demo")
    return lipsync.stub.GenerateBatchInference(pb.BatchInferenceRequest(**fields), timeout=60)


def test_new_form_gives_the_mouths_of_the_whole_clip(lipsync, speech16k):
    first, count = 20, 6
    ids = [7, 7, 8, 9, 200, 249]
    whole = generate(
        lipsync,
        frame_ids=ids,
        audio_pcm=speech16k.tobytes(),
        audio_sample_rate=16000,
        first_frame_index=first,
    )
    start = max(first_sample_needed(first), 0)
    piece = generate(
        lipsync,
        frame_ids=ids,
        audio_pcm=speech16k[start : samples_needed(first + count - 1)].tobytes(),
        audio_sample_rate=16000,
        audio_start_sample=start,
        first_frame_index=first,
        session_id="test-session",
    )
    assert [r.frame_index for r in piece.responses] == list(range(first, first + count))
    assert [r.frame_id for r in piece.responses] == ids
    for a, b in zip(whole.responses, piece.responses, strict=True):
        assert np.abs(decode_mouth(a.prediction_data) - decode_mouth(b.prediction_data)).max() <= 1


def test_speech_moves_the_mouth(lipsync, speech16k):
    """The same avatar frame drawn for spoken and for silent audio: the mouth differs."""
    ids = [100] * 4
    spoken = generate(
        lipsync,
        frame_ids=ids,
        audio_pcm=speech16k.tobytes(),
        audio_sample_rate=16000,
        first_frame_index=19,
    )
    silent = generate(lipsync, frame_ids=ids, first_frame_index=19)
    mouth = (slice(180, 300), slice(80, 240))
    changes = [
        np.abs(
            decode_mouth(a.prediction_data)[mouth] - decode_mouth(b.prediction_data)[mouth]
        ).mean()
        for a, b in zip(spoken.responses, silent.responses, strict=True)
    ]
    assert max(changes) > 2.0
    still = generate(lipsync, frame_ids=ids, first_frame_index=19)
    assert [r.prediction_data for r in still.responses] == [
        r.prediction_data for r in silent.responses
    ]


def test_concurrent_clients_share_forward_passes(lipsync, speech16k):
    clients = 4
    frames = 4
    barrier = threading.Barrier(clients + 1)

    def small(k: int) -> pb.BatchInferenceResponse:
        barrier.wait(30)
        return generate(
            lipsync,
            frame_ids=[10 * k + i for i in range(frames)],
            audio_pcm=speech16k.tobytes(),
            audio_sample_rate=16000,
            first_frame_index=frames * k,
        )

    with ThreadPoolExecutor(clients + 1) as pool:
        # a long request keeps the worker busy while the small ones arrive and queue up
        busy = pool.submit(generate, lipsync, frame_ids=list(range(64)))
        smalls = [pool.submit(small, k) for k in range(clients)]
        barrier.wait(30)
        responses = [f.result(60) for f in smalls]
        assert busy.result(60).batch_frames == 64
    for k, response in enumerate(responses):
        assert [r.frame_id for r in response.responses] == [10 * k + i for i in range(frames)]
        assert [r.frame_index for r in response.responses] == [
            frames * k + i for i in range(frames)
        ]
    assert max(r.batch_frames for r in responses) > frames
    assert all(r.queue_time_ms >= 0 for r in responses)


ERRORS = [
    ({"model_name": "nobody"}, grpc.StatusCode.NOT_FOUND, "'nobody' is not loaded.*demo"),
    ({"frame_ids": [250]}, grpc.StatusCode.INVALID_ARGUMENT, r"frame_ids\[0\] = 250 .*0\.\.249"),
    ({"frame_ids": []}, grpc.StatusCode.INVALID_ARGUMENT, "frame_ids is empty"),
    ({"frame_ids": list(range(65))}, grpc.StatusCode.INVALID_ARGUMENT, "at most 64"),
    (
        {"audio_override": "bm90IGF1ZGlv!!"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "audio_override: audio is not valid base64",
    ),
    ({"audio_pcm": b"\x01\x02\x03"}, grpc.StatusCode.INVALID_ARGUMENT, "odd number of bytes"),
    ({"audio_start_sample": -5}, grpc.StatusCode.INVALID_ARGUMENT, "audio_start_sample"),
    ({"first_frame_index": -1}, grpc.StatusCode.INVALID_ARGUMENT, "first_frame_index"),
    (
        {"audio_pcm": bytes(2 * 16000 * 31), "audio_sample_rate": 16000},
        grpc.StatusCode.INVALID_ARGUMENT,
        "31.0 s of audio .* at most 30 s",
    ),
    (
        {"audio_start_sample": 1, "audio_sample_rate": 24000},
        grpc.StatusCode.INVALID_ARGUMENT,
        "not a whole 16 kHz sample",
    ),
    ({"audio_sample_rate": 999}, grpc.StatusCode.INVALID_ARGUMENT, "audio_sample_rate"),
    (
        {"audio_start_sample": 24000},
        grpc.StatusCode.INVALID_ARGUMENT,
        "is too late: frame 0 .* from sample 0",
    ),
]


@pytest.mark.parametrize(("fields", "code", "message"), ERRORS)
def test_bad_requests_get_a_status_naming_the_problem(lipsync, fields, code, message):
    fields = {"frame_ids": [0], **fields}
    with pytest.raises(grpc.RpcError) as caught:
        generate(lipsync, **fields)
    assert caught.value.code() == code
    assert re.search(message, caught.value.details()), caught.value.details()
    # the server goes on serving
    assert len(generate(lipsync, frame_ids=[1]).responses) == 1


def test_health_reports_serving(lipsync):
    health = health_pb2_grpc.HealthStub(lipsync.channel)
    for service in ("", "lipsync.LipSyncService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_list_models_gives_the_timing_facts(lipsync, demo_package):
    models = lipsync.stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    # the broken package was skipped at start; the service runs with the others
    assert [m.name for m in models] == ["demo"]
    demo = models[0]
    assert (demo.fps, demo.frame_count, demo.video_width, demo.video_height) == (25, 250, 512, 512)
    assert demo.lookahead_ms == pytest.approx(452.5) and demo.lookahead_frames == 11
    assert (demo.feature_window_frames, demo.feature_lookahead_frames) == (16, 7)
    assert demo.feature_sample_rate == 16000
    # the runtime in use, as auto resolved it on this machine
    assert demo.runtime == resolve_runtime(load_package(demo_package), "auto", "cpu")
    assert demo.version == "1.0.0"
    assert "broken" in lipsync.handle.load_errors


def test_load_model_reloads_a_package(lipsync):
    before = lipsync.handle.registry.get("demo").model
    reply = lipsync.stub.LoadModel(
        pb.LoadModelRequest(model_name="demo", package_path="demo"), timeout=60
    )
    assert reply.success and reply.model_name == "demo"
    assert reply.initialization_time_ms > 0 and "250 frames" in reply.message
    assert reply.model.frame_count == 250
    assert lipsync.handle.registry.get("demo").model is not before
    assert len(generate(lipsync, frame_ids=[3, 4]).responses) == 2


@pytest.mark.parametrize(
    ("name", "path", "code", "message"),
    [
        ("demo", "../demo", grpc.StatusCode.INVALID_ARGUMENT, "outside the models folder"),
        ("demo", "/etc", grpc.StatusCode.INVALID_ARGUMENT, "outside the models folder"),
        ("demo", "escape", grpc.StatusCode.INVALID_ARGUMENT, "outside the models folder"),
        ("../demo", "", grpc.StatusCode.INVALID_ARGUMENT, "package name '../demo' is not allowed"),
        ("ghost", "", grpc.StatusCode.NOT_FOUND, "no model package 'ghost'.*demo"),
        ("broken", "", grpc.StatusCode.FAILED_PRECONDITION, "format must be"),
    ],
)
def test_load_model_refuses_bad_names_and_paths(lipsync, name, path, code, message):
    with pytest.raises(grpc.RpcError) as caught:
        lipsync.stub.LoadModel(pb.LoadModelRequest(model_name=name, package_path=path), timeout=30)
    assert caught.value.code() == code
    assert re.search(message, caught.value.details()), caught.value.details()
    assert [m.name for m in lipsync.stub.ListModels(pb.ListModelsRequest()).models] == ["demo"]


def test_load_model_refuses_a_package_outside_the_models_folder(lipsync, demo_package):
    request = pb.LoadModelRequest(model_name="demo", package_path=str(demo_package))
    with pytest.raises(grpc.RpcError) as caught:
        lipsync.stub.LoadModel(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "outside the models folder" in caught.value.details()


def test_full_queue_and_deadlines(make_server, service_models, fake_registry, fake_runtime):
    """With the worker held busy: a request whose deadline passes while queued is answered
    DEADLINE_EXCEEDED and never computed, and one past the queue limit is refused at once."""
    server = make_server(service_models, registry=fake_registry, max_queued_frames=8)
    try:
        fake_runtime.hold()
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(generate, server, frame_ids=[1, 2, 3, 4])
            assert fake_runtime.entered.wait(30)
            with pytest.raises(grpc.RpcError) as late:
                server.stub.GenerateBatchInference(
                    pb.BatchInferenceRequest(model_name="demo", frame_ids=[200, 201]),
                    timeout=0.3,
                )
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            wait_for_queue(server, 0)  # the abandoned request leaves the queue
            queued = pool.submit(generate, server, frame_ids=list(range(8)))
            wait_for_queue(server, 8)
            with pytest.raises(grpc.RpcError) as full:
                generate(server, frame_ids=[9])
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MAX_QUEUED_FRAMES=8" in full.value.details()
            fake_runtime.release()
            assert len(running.result(30).responses) == 4
            assert len(queued.result(30).responses) == 8
        assert not {200, 201, 9} & fake_runtime.frame_ids_seen
        assert len(generate(server, frame_ids=[9]).responses) == 1
    finally:
        fake_runtime.release()


def wait_for_queue(server, frames: int) -> None:
    """Until exactly ``frames`` frames wait in the server's queue (requests sent elsewhere)."""
    pause = threading.Event()
    for _ in range(3000):
        if server.handle.batcher.queued_frames == frames:
            return
        pause.wait(0.01)
    raise AssertionError(f"the queue never held {frames} frames")


def test_load_model_refuses_bad_warm_up_audio(lipsync):
    request = pb.LoadModelRequest(model_name="demo", audio_override="%%% not base64")
    with pytest.raises(grpc.RpcError) as caught:
        lipsync.stub.LoadModel(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "audio_override: audio is not valid base64" in caught.value.details()


def test_load_model_serves_a_package_under_its_manifest_name_only(lipsync):
    """The lip-sync service, the web server and model_changed.video_url all use one name."""
    with pytest.raises(grpc.RpcError) as caught:
        lipsync.stub.LoadModel(
            pb.LoadModelRequest(model_name="other", package_path="demo"), timeout=60
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "named 'demo' in its manifest" in caught.value.details()
    assert "load it as 'demo'" in caught.value.details()
    assert [m.name for m in lipsync.stub.ListModels(pb.ListModelsRequest()).models] == ["demo"]
