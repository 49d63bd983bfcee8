"""Requests turned into frames and features: the checks, and audio stretches equal whole clips."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest
import simplejpeg

from lipstream.audio.features import offline_features
from lipstream.audio.timeline import SYNCTALK2D
from lipstream.errors import InvalidInput
from lipstream.service import lipsync_pb2 as pb
from lipstream.service.batcher import Batcher, Job
from lipstream.service.inputs import MAX_FRAMES_PER_REQUEST, FrameRequest

first_sample_needed = SYNCTALK2D.first_sample_needed
samples_needed = SYNCTALK2D.samples_needed


def parse(frame_count: int = 250, default_rate: int = 24000, **fields) -> FrameRequest:
    fields.setdefault("model_name", "demo")
    fields.setdefault("frame_ids", [0])
    return FrameRequest.from_message(
        pb.BatchInferenceRequest(**fields),
        frame_count=frame_count,
        default_sample_rate=default_rate,
    )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"frame_ids": []}, "frame_ids is empty"),
        ({"frame_ids": [0, 250]}, r"frame_ids\[1\] = 250 is out of range: .* 0\.\.249"),
        ({"frame_ids": [-1]}, r"frame_ids\[0\] = -1 is out of range"),
        ({"frame_ids": [0] * (MAX_FRAMES_PER_REQUEST + 1)}, "at most 64"),
        ({"first_frame_index": -3}, "first_frame_index must be 0 or more"),
        ({"audio_start_sample": -1}, "audio_start_sample must be 0 or more"),
        ({"audio_sample_rate": 1000}, "audio_sample_rate: unsupported sample_rate 1000"),
        ({"audio_sample_rate": 24000, "audio_start_sample": 1}, "not a whole 16 kHz sample"),
        ({"audio_start_sample": 3}, "is too late: frame 0"),
        ({"audio_pcm": b"\x00\x01\x02"}, "audio_pcm holds an odd number of bytes"),
        ({"audio_pcm": bytes(2 * 24000 * 31)}, r"audio_pcm holds 31\.0 s .* at most 30 s"),
        ({"audio_override": "A" * (2 * 24000 * 31 * 4 // 3)}, "audio_override holds 31.0 s"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(fields, problem):
    with pytest.raises(InvalidInput, match=problem):
        parse(**fields)


def test_audio_problems_found_on_decoding_name_the_field():
    request = parse(audio_override="not base64!")
    with pytest.raises(InvalidInput, match="audio_override: audio is not valid base64"):
        request.pcm16k()
    request = parse(audio_override=base64.b64encode(b"\x00\x01\x02").decode())
    with pytest.raises(InvalidInput, match="audio_override: audio has an odd number of bytes"):
        request.pcm16k()


def test_defaults_follow_the_guide():
    request = parse(frame_ids=[5, 6], audio_override=base64.b64encode(bytes(960)).decode())
    assert request.sample_rate == 24000  # AUDIO_SAMPLE_RATE when the request names none
    assert request.first_frame_index == 0 and request.audio_start_sample == 0
    assert len(request.pcm16k()) == 320  # 480 samples at 24 kHz are 20 ms
    assert parse().pcm16k().size == 0  # no audio: silence


def test_audio_pcm_takes_precedence_over_audio_override():
    request = parse(audio_pcm=bytes(4), audio_override="not base64!", audio_sample_rate=16000)
    assert request.audio_field == "audio_pcm"
    assert len(request.pcm16k()) == 2


def test_a_stretch_of_audio_gives_the_frames_of_the_whole_clip(lipsync, speech16k):
    """The new form (audio_start_sample, first_frame_index) equals a whole-clip request."""
    model = lipsync.handle.registry.get("demo").model
    first, count = 30, 8
    ids = list(range(100, 100 + count))
    start = max(first_sample_needed(first), 0)
    stretch = speech16k[start : samples_needed(first + count - 1)]
    whole = parse(
        frame_ids=ids,
        audio_pcm=speech16k.tobytes(),
        audio_sample_rate=16000,
        first_frame_index=first,
    )
    piece = parse(
        frame_ids=ids,
        audio_pcm=stretch.tobytes(),
        audio_sample_rate=16000,
        audio_start_sample=start,
        first_frame_index=first,
    )
    reference = offline_features(speech16k, model.encoder)[first : first + count]
    np.testing.assert_array_equal(whole.features(model.encoder), reference)
    np.testing.assert_array_equal(piece.features(model.encoder), reference)

    batcher = Batcher(batch_window_ms=0.0)
    try:

        async def mouths(request: FrameRequest) -> list[bytes]:
            features = lambda: request.features(model.encoder)  # noqa: E731
            result = await batcher.submit(Job(model.generator, request.frame_ids, features))
            assert len(result.jpegs) == count
            return result.jpegs

        from_whole = asyncio.run(mouths(whole))
        from_piece = asyncio.run(mouths(piece))
    finally:
        batcher.close()
    assert from_piece == from_whole
    expected = model.generator.generate(ids, reference)
    assert from_whole == [
        simplejpeg.encode_jpeg(
            np.ascontiguousarray(m), quality=batcher.jpeg_quality, colorspace="BGR"
        )
        for m in expected
    ]
