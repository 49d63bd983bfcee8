"""One session's ``StreamLipSync`` call: each sample of audio goes up once, frames come back.

A job's audio is the stretch its frames read (``InferenceJob.audio``); consecutive jobs'
stretches overlap by about a second. The stream sends only the part of each stretch it has not
sent on this call yet, then the request for the frames, and matches answers to requests by
``request_id`` (the job id). When the call breaks (its instance died, or the service
restarted), the waiting jobs fail with ServiceUnavailable; the session retries them, and the
retry opens a new call (on any instance that gRPC's balancing picks) and sends each job's
whole stretch again, so the service's features continue where they were. A request answered
OUT_OF_RANGE (the service lacks audio it reads) is sent once more with its whole stretch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from lipstream.errors import InvalidInput, LipstreamError, Overloaded, ServiceUnavailable
from lipstream.frames.session import InferenceJob
from lipstream.service import lipsync_pb2 as pb
from lipstream.service import lipsync_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Mouths = list[tuple[bytes, Sequence[float]]]
_STATUS_BY_NUMBER = {int(code.value[0]): code for code in grpc.StatusCode}


@dataclass
class _Sent:
    """What this call has sent of one utterance: samples [start, end), and whether its end."""

    start: int
    end: int
    ended: bool = False


class LipSyncStream:
    """The frame generator's side of one session's stream (see the module docstring)."""

    def __init__(
        self,
        stub: pb_grpc.LipSyncServiceStub,
        session_id: str,
        deadline_s: float,
        map_error,
        on_reachable,
    ) -> None:
        self._stub = stub
        self.session_id = session_id
        self.deadline_s = deadline_s
        self._map_error = map_error  # grpc status code, details, what -> LipstreamError
        self._on_reachable = on_reachable  # called with True/False as the service answers
        self._call: grpc.aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, tuple[asyncio.Future[pb.StreamResponse | None], object]] = {}
        self._sent: dict[int, _Sent] = {}
        self._lock = asyncio.Lock()  # one job's messages go out together, in order
        self.calls_opened = 0

    async def generate(self, job: InferenceJob) -> Mouths | None:
        """The job's mouths (JPEG, bounds) in frame order; None if interrupted meanwhile."""
        for resend in (False, True):
            answer = await self._request(job, resend)
            if answer is None:
                return None
            if not answer.error_code:
                return mouths_of(job, answer.frames)
            code = _STATUS_BY_NUMBER.get(answer.error_code, grpc.StatusCode.UNKNOWN)
            if code == grpc.StatusCode.CANCELLED:
                return None
            if code != grpc.StatusCode.OUT_OF_RANGE or resend:
                raise self._map_error(code, answer.error, "StreamLipSync")
            log.info(
                "session %s: the service lacked audio (%s); sending it again",
                self.session_id,
                answer.error,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def interrupt(self) -> None:
        """Drop what is waiting, and tell the service to forget the session's audio."""
        for future, _ in self._pending.values():
            if not future.done():
                future.set_result(None)
        self._sent.clear()
        call = self._call
        if call is not None and not call.done():
            async with self._lock:
                with contextlib.suppress(Exception):  # a broken call has nothing to forget
                    await call.write(pb.StreamRequest(interrupt=pb.StreamInterrupt()))

    async def close(self) -> None:
        """End the call (the session is over)."""
        call, reader = self._call, self._reader
        self._call = self._reader = None
        if call is not None:
            call.cancel()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    # ------------------------------------------------------------------------------------

    async def _request(self, job: InferenceJob, resend: bool) -> pb.StreamResponse | None:
        future: asyncio.Future[pb.StreamResponse | None] = (
            asyncio.get_running_loop().create_future()
        )
        try:
            async with self._lock:
                call = self._open()
                self._pending[job.job_id] = (future, call)
                if resend:
                    self._sent.pop(job.utterance, None)
                try:
                    for message in self._messages(job):
                        await call.write(message)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                    self._broken(
                        call, ServiceUnavailable("the stream to the lip-sync service broke")
                    )
            return await asyncio.wait_for(future, self.deadline_s)
        except TimeoutError:
            raise Overloaded(
                f"the lip-sync service did not answer within {1000 * self.deadline_s:.0f} ms"
            ) from None
        finally:
            self._pending.pop(job.job_id, None)

    def _open(self) -> grpc.aio.StreamStreamCall:
        if self._call is None or self._call.done():
            self._call = self._stub.StreamLipSync()
            self._sent.clear()
            self._reader = asyncio.create_task(self._read(self._call))
            self.calls_opened += 1
        return self._call

    def _messages(self, job: InferenceJob) -> list[pb.StreamRequest]:
        """The audio this call has not sent yet of the job's stretch, then the request."""
        start = job.audio_start_sample
        end = start + len(job.audio)
        sent = self._sent.get(job.utterance)
        if sent is None or start < sent.start or start > sent.end:
            sent = self._sent[job.utterance] = _Sent(start, start)
            begin = start
        else:
            begin = sent.end
        audio = pb.StreamAudio(utterance=job.utterance, start_sample=begin)
        if end > begin:
            audio.pcm = job.audio.samples[begin - start :].tobytes()
            sent.end = end
        if job.utterance_samples is not None and not sent.ended:
            audio.total_samples = job.utterance_samples
            sent.ended = True
        messages = []
        if audio.pcm or audio.HasField("total_samples"):
            messages.append(pb.StreamRequest(audio=audio))
        messages.append(
            pb.StreamRequest(
                frames=pb.StreamFrames(
                    request_id=job.job_id,
                    model_name=job.model_name,
                    utterance=job.utterance,
                    first_frame_index=job.utterance_first_frame,
                    frame_ids=job.frame_ids,
                    deadline_ms=round(1000 * self.deadline_s),
                    session_id=self.session_id,
                )
            )
        )
        return messages

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        error: LipstreamError
        try:
            async for response in call:
                self._on_reachable(True)
                waiting = self._pending.get(response.request_id)
                if waiting is not None and not waiting[0].done():
                    waiting[0].set_result(response)
            error = ServiceUnavailable("the lip-sync service ended the stream")
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self._call is not call:
                return  # closed by us
            error = self._map_error(exc.code(), exc.details() or "", "StreamLipSync")
        except asyncio.CancelledError:
            return
        self._broken(call, error)

    def _broken(self, call: object, error: LipstreamError) -> None:
        """The call is over: the jobs sent on it fail with ``error``; the next one reopens."""
        if isinstance(error, ServiceUnavailable):
            self._on_reachable(False)
        if self._call is call:
            self._call = None
            self._sent.clear()
        for future, sent_on in list(self._pending.values()):
            if sent_on is call and not future.done():
                future.set_exception(error)


def mouths_of(job: InferenceJob, answer: pb.BatchInferenceResponse) -> Mouths:
    """A job's answer as (JPEG, bounds) per frame, in order; InvalidInput if any is missing."""
    failed = [r for r in answer.responses if not r.success]
    if failed or len(answer.responses) != job.frame_count:
        reason = failed[0].error if failed else "wrong number of frames"
        raise InvalidInput(f"the lip-sync service could not make frames: {reason}")
    return [(r.prediction_data, tuple(r.bounds)) for r in answer.responses]
