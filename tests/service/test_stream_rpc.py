"""StreamLipSync over real loopback gRPC with the demo avatar: audio once, the same mouths."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
from testkit.frames import decode_mouth

from lipstream.audio import timeline as tl
from lipstream.service import lipsync_pb2 as pb

OK = 0


def audio(utterance: int, start: int, pcm: np.ndarray, total: int | None = None):
    piece = pb.StreamAudio(utterance=utterance, start_sample=start, pcm=pcm.tobytes())
    if total is not None:
        piece.total_samples = total
    return pb.StreamRequest(audio=piece)


def frames(request_id: int, first: int, ids, utterance: int = 1, model: str = "demo"):
    return pb.StreamRequest(
        frames=pb.StreamFrames(
            request_id=request_id,
            model_name=model,
            utterance=utterance,
            first_frame_index=first,
            frame_ids=list(ids),
        )
    )


def answers(lipsync, requests) -> dict[int, pb.StreamResponse]:
    got = {}
    for response in lipsync.stub.StreamLipSync(iter(requests), timeout=60):
        assert response.request_id not in got
        got[response.request_id] = response
    return got


def test_audio_sent_once_gives_the_mouths_of_the_whole_clip(lipsync, speech16k):
    n = tl.frame_count(len(speech16k))
    ids = [(7 * k) % 250 for k in range(n)]
    whole = lipsync.stub.GenerateBatchInference(
        pb.BatchInferenceRequest(
            model_name="demo",
            frame_ids=ids[:40],
            audio_pcm=speech16k.tobytes(),
            audio_sample_rate=16000,
        ),
        timeout=60,
    )
    requests, sent = [], 0
    for rid, first in enumerate(range(0, 40, 5), start=1):
        end = min(tl.SYNCTALK2D.samples_needed(first + 4), len(speech16k))
        requests.append(audio(1, sent, speech16k[sent:end]))  # each sample once
        sent = end
        requests.append(frames(rid, first, ids[first : first + 5]))
    got = answers(lipsync, requests)
    assert sorted(got) == list(range(1, 9))
    streamed = [r for rid in sorted(got) for r in got[rid].frames.responses]
    assert all(got[rid].error_code == OK for rid in got)
    assert [r.frame_index for r in streamed] == list(range(40))
    assert [r.frame_id for r in streamed] == ids[:40]
    for a, b in zip(whole.responses, streamed, strict=True):
        assert np.abs(decode_mouth(a.prediction_data) - decode_mouth(b.prediction_data)).max() <= 1
        assert list(a.bounds) == list(b.bounds)


def test_the_end_of_an_utterance_completes_its_frames_with_silence(lipsync, speech16k):
    clip = speech16k[:8000]  # half a second: 13 frames
    got = answers(lipsync, [audio(3, 0, clip, total=len(clip)), frames(1, 0, range(13), 3)])
    assert got[1].error_code == OK
    assert [r.frame_index for r in got[1].frames.responses] == list(range(13))


def test_requests_fail_alone_with_their_status(lipsync, speech16k):
    piece = speech16k[: tl.SYNCTALK2D.samples_needed(4)]
    got = answers(
        lipsync,
        [
            audio(1, 0, piece),
            frames(1, 0, [0, 1], model="nobody"),
            frames(2, 0, [0, 999]),
            frames(3, 30, [0]),  # its audio was never sent
            frames(4, 0, [0, 1, 2, 3, 4]),
        ],
    )
    assert got[1].error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "nobody" in got[1].error
    assert got[2].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "frame_ids[1] = 999 is out of range" in got[2].error
    assert got[3].error_code == grpc.StatusCode.OUT_OF_RANGE.value[0]
    assert "send the frames' audio again" in got[3].error
    assert got[4].error_code == OK and len(got[4].frames.responses) == 5


@pytest.mark.parametrize(
    "request_, message",
    [
        (pb.StreamRequest(), "must hold audio, frames or interrupt"),
        (
            pb.StreamRequest(audio=pb.StreamAudio(utterance=1, pcm=b"\x00\x01\x02")),
            "audio.pcm",
        ),
    ],
)
def test_a_malformed_message_ends_the_stream_with_the_reason(lipsync, request_, message):
    with pytest.raises(grpc.RpcError) as failure:
        answers(lipsync, [request_])
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in failure.value.details()


def test_interrupt_forgets_the_audio_and_the_stream_goes_on(lipsync, speech16k):
    outbox: queue.Queue = queue.Queue()

    def requests():
        while (item := outbox.get(timeout=30)) is not None:
            yield item

    responses = lipsync.stub.StreamLipSync(requests(), timeout=60)
    piece = speech16k[: tl.SYNCTALK2D.samples_needed(9)]
    outbox.put(audio(1, 0, piece))
    outbox.put(frames(1, 0, range(5)))
    assert next(responses).error_code == OK
    outbox.put(pb.StreamRequest(interrupt=pb.StreamInterrupt()))
    outbox.put(frames(2, 5, range(5)))  # utterance 1's audio is forgotten
    missing = next(responses)
    assert missing.request_id == 2
    assert missing.error_code == grpc.StatusCode.OUT_OF_RANGE.value[0]
    outbox.put(audio(2, 0, piece))  # the next utterance
    outbox.put(frames(3, 0, range(5), utterance=2))
    assert next(responses).error_code == OK
    outbox.put(None)
    assert list(responses) == []
