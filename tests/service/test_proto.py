"""The gRPC contract: generated code up to date, and a client of the guide's messages works."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import simplejpeg
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

from lipstream.audio.files import read_audio_file

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PROTO = "lipstream/service/lipsync.proto"
GENERATED = ("lipsync_pb2.py", "lipsync_pb2.pyi", "lipsync_pb2_grpc.py")

# The messages exactly as the server guide defines them (its package is `lipsync`).
GUIDE_PROTO = """
syntax = "proto3";
package lipsync;

message BatchInferenceRequest {
    string model_name = 1;
    repeated int32 frame_ids = 2;
    optional string audio_override = 3;  // base64 audio data
}

message BatchInferenceResponse {
    repeated InferenceResponse responses = 1;
    int32 total_processing_time_ms = 2;
}

message InferenceResponse {
    bool success = 1;
    bytes prediction_data = 2;        // JPEG encoded mouth region
    repeated float bounds = 3;        // [xmin, ymin, xmax, ymax]
    int32 processing_time_ms = 4;
    string model_name = 5;
    int32 frame_id = 6;
    string prediction_shape = 8;      // "320x320x3"
    optional string error = 9;
}
"""


def run_protoc(*args: str) -> None:
    # protoc's own well-known types are not needed: lipsync.proto imports nothing
    assert protoc.main(["grpc_tools.protoc", *args]) == 0, f"protoc failed: {args}"


def test_generated_code_is_up_to_date(tmp_path):
    run_protoc(
        f"-I{SRC}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(SRC / PROTO),
    )
    for name in GENERATED:
        fresh = (tmp_path / "lipstream" / "service" / name).read_text()
        committed = (SRC / "lipstream" / "service" / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make proto` and commit the result"


@pytest.fixture(scope="module")
def guide_messages(tmp_path_factory):
    """Message classes compiled from the guide's definitions, in a pool of their own."""
    folder = tmp_path_factory.mktemp("guide-proto")
    (folder / "guide_lipsync.proto").write_text(GUIDE_PROTO)
    descriptors = folder / "guide.pb"
    run_protoc(f"-I{folder}", f"--descriptor_set_out={descriptors}", "guide_lipsync.proto")
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes()).file:
        pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"lipsync.{name}"))
        for name in ("BatchInferenceRequest", "BatchInferenceResponse")
    }


def test_a_client_of_the_guide_gets_one_mouth_per_frame(lipsync, guide_messages, speech_wav):
    request_type = guide_messages["BatchInferenceRequest"]
    response_type = guide_messages["BatchInferenceResponse"]
    call = lipsync.channel.unary_unary(
        "/lipsync.LipSyncService/GenerateBatchInference",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    # the guide's client sends base64 PCM16 at AUDIO_SAMPLE_RATE (24 kHz by default)
    speech = read_audio_file(speech_wav, 24000)
    frame_ids = [0, 1, 2, 120, 249, 249]
    reply = call(
        request_type(
            model_name="demo",
            frame_ids=frame_ids,
            audio_override=base64.b64encode(speech.to_bytes()).decode("ascii"),
        ),
        timeout=60,
    )
    assert [r.frame_id for r in reply.responses] == frame_ids
    assert reply.total_processing_time_ms > 0
    for r in reply.responses:
        assert r.success and not r.HasField("error")
        assert r.model_name == "demo" and r.prediction_shape == "320x320x3"
        image = simplejpeg.decode_jpeg(r.prediction_data, colorspace="BGR")
        assert image.shape == (320, 320, 3)
        xmin, ymin, xmax, ymax = r.bounds
        assert 0 <= xmin < xmax <= 512 and 0 <= ymin < ymax <= 512  # inside the 512x512 video


def test_a_guide_client_without_audio_gets_closed_mouths(lipsync, guide_messages):
    request_type = guide_messages["BatchInferenceRequest"]
    call = lipsync.channel.unary_unary(
        "/lipsync.LipSyncService/GenerateBatchInference",
        request_serializer=request_type.SerializeToString,
        response_deserializer=guide_messages["BatchInferenceResponse"].FromString,
    )
    reply = call(request_type(model_name="demo", frame_ids=[5]), timeout=60)
    assert len(reply.responses) == 1 and reply.responses[0].success
