"""``StreamLipSync``: one session's audio goes up once, its frames come back, on one stream.

``serve_stream`` reads the client's messages in order: audio pieces go into the stream's
``StreamState`` at once (decoding 16 kHz PCM16 is cheap); each frames request becomes a task
that queues one job on the batcher, with its features computed on the worker from the held
audio, and answers by ``request_id`` as soon as its mouths are encoded, in whatever order
that is. An interrupt forgets the audio and cancels the requests not yet answered (a job not
yet started is skipped). A malformed message ends the stream with INVALID_ARGUMENT; a request
that fails is answered with its own status, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import grpc

from lipstream.audio import timeline as tl
from lipstream.errors import InvalidInput, LipstreamError
from lipstream.service import lipsync_pb2 as pb
from lipstream.service.inputs import decode_audio
from lipstream.service.stream_state import StreamState

_log = logging.getLogger(__name__)

MAX_UNANSWERED = 32  # frames requests of one stream in flight or waiting to be sent

# makes one frames request's answer from the stream's state (LipSyncServicer._stream_frames)
MakeFrames = Callable[[StreamState, pb.StreamFrames], Awaitable[pb.BatchInferenceResponse]]
StatusOf = Callable[[LipstreamError], grpc.StatusCode]


def _forget(pending: dict[int, asyncio.Task[None]], request_id: int, _: object) -> None:
    pending.pop(request_id, None)


def _code(status: grpc.StatusCode) -> int:
    return int(status.value[0])


def add_audio(state: StreamState, audio: pb.StreamAudio) -> None:
    """Hold one audio piece of the stream (and the utterance's end, when it says so)."""
    utterance = state.utterance(audio.utterance)
    if audio.pcm:
        samples = decode_audio(bytes(audio.pcm), tl.SAMPLE_RATE, "audio.pcm")
        utterance.add_audio(audio.start_sample, samples)
    if audio.HasField("total_samples"):
        utterance.end(audio.total_samples)


async def serve_stream(
    requests: AsyncIterator[pb.StreamRequest],
    make_frames: MakeFrames,
    status_of: StatusOf,
    on_answered: Callable[[grpc.StatusCode], None] = lambda code: None,
) -> AsyncIterator[pb.StreamResponse]:
    """The answers of one stream, as they are ready; ends when the client's side has ended
    and every request is answered. ``on_answered`` hears the status of each frames request's
    answer. Raises InvalidInput on a malformed message."""
    state = StreamState()
    answers: asyncio.Queue[pb.StreamResponse | BaseException | None] = asyncio.Queue()
    pending: dict[int, asyncio.Task[None]] = {}
    # requests not yet answered and sent: past the bound the stream stops reading (a client
    # that sends requests but reads no answers holds at most this many)
    room = asyncio.Semaphore(MAX_UNANSWERED)

    async def answer(request: pb.StreamFrames) -> None:
        code = grpc.StatusCode.OK
        try:
            frames = await make_frames(state, request)
            response = pb.StreamResponse(request_id=request.request_id, frames=frames)
        except LipstreamError as exc:
            code = status_of(exc)
            response = pb.StreamResponse(
                request_id=request.request_id, error_code=_code(code), error=str(exc)
            )
        except Exception as exc:  # one request's failure is not the stream's
            _log.exception("StreamLipSync request %d failed", request.request_id)
            code = grpc.StatusCode.INTERNAL
            response = pb.StreamResponse(
                request_id=request.request_id,
                error_code=_code(code),
                error=f"{type(exc).__name__}: {exc}",
            )
        on_answered(code)
        answers.put_nowait(response)

    async def read() -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("message")
                if kind == "audio":
                    add_audio(state, request.audio)
                elif kind == "frames":
                    if request.frames.request_id in pending:
                        raise InvalidInput(
                            f"request_id {request.frames.request_id} is already in flight: "
                            "each frames request needs its own"
                        )
                    await room.acquire()
                    rid = request.frames.request_id
                    pending[rid] = asyncio.create_task(answer(request.frames))
                    pending[rid].add_done_callback(partial(_forget, pending, rid))
                elif kind == "interrupt":
                    state.clear()
                    for rid, task in list(pending.items()):
                        if task.done():  # answered already
                            continue
                        task.cancel()  # a job not yet started is skipped
                        answers.put_nowait(
                            pb.StreamResponse(
                                request_id=rid,
                                error_code=_code(grpc.StatusCode.CANCELLED),
                                error="interrupted",
                            )
                        )
                else:
                    raise InvalidInput("a StreamRequest must hold audio, frames or interrupt")
            while pending:  # the client is done sending: answer what it asked for
                await asyncio.gather(*pending.values(), return_exceptions=True)
            answers.put_nowait(None)
        except Exception as exc:
            answers.put_nowait(exc)

    reader = asyncio.create_task(read())
    try:
        while (item := await answers.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
            room.release()
    finally:
        reader.cancel()
        for task in list(pending.values()):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
