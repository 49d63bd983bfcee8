"""One client of the frame generator: its socket, its Session and its jobs in flight.

Each connection runs in one TaskGroup: the reader (client messages), the scheduler (sends jobs
to the lip-sync service as soon as frames are ready and a request slot is free) and one task
per job in flight. All of them end with the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from lipstream.audio.pcm import AudioChunk
from lipstream.errors import (
    InvalidInput,
    ModelNotFound,
    Overloaded,
    ServiceUnavailable,
)
from lipstream.frames import protocol as proto
from lipstream.frames.session import InferenceJob, MouthFrame, Session

if TYPE_CHECKING:
    from lipstream.frames.server import FrameGenerator

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY_FIRST_S, _RETRY_MAX_S = 0.1, 2.0


class _Closing(Exception):
    """Raised in the connection's TaskGroup to end its tasks once the client has gone."""


class Connection:
    """One client: a shuttle between its socket and its Session, plus the jobs in flight."""

    def __init__(self, generator: FrameGenerator, ws: ServerConnection, address: str) -> None:
        self.generator = generator
        self.settings = generator.settings
        self.client = generator.client
        self.metrics = generator.metrics
        self.ws = ws
        self.address = address
        self.id = uuid.uuid4().hex[:12]
        self.session = Session(
            self.settings.audio_sample_rate,
            batch_size=self.settings.inference_batch_size,
            audio_buffer_ms=self.settings.audio_buffer_size,
            shared_timings=generator.timings,
        )
        # audio goes to the lip-sync service once, on one stream (or in each unary request)
        self.stream = self.client.open_stream(self.id) if self.settings.grpc_streaming else None
        self.push_frames = False
        self.binary_frames = False
        self.wake = asyncio.Event()
        self.service_down_reported = False
        self._tg: asyncio.TaskGroup | None = None
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            proto.AudioChunkMessage: self._on_audio_message,
            proto.GetFrame: self._on_get_frame,
            proto.SetModel: self._on_set_model,
            proto.GetStats: self._on_get_stats,
            proto.Configure: self._on_configure,
            proto.EndOfSpeech: self._on_end_of_speech,
            proto.Interrupt: self._on_interrupt,
            proto.Ping: self._on_ping,
        }

    # ------------------------------------------------------------------------ sending

    async def _send(self, data: str | bytes) -> None:
        """Send, or drop a client that has not read for CLIENT_SEND_TIMEOUT_S: its socket is
        cut, which ends its session and no one else's."""
        try:
            # in this task (not wait_for's own): messages go out in the order they are sent
            async with asyncio.timeout(self.settings.client_send_timeout_s):
                await self.ws.send(data)
        except ConnectionClosed:
            pass
        except TimeoutError:
            log.warning(
                "session %s: the client has not read for %.0f s: closing it",
                self.id,
                self.settings.client_send_timeout_s,
            )
            self.metrics.errors.labels("client_too_slow").inc()
            self.ws.transport.abort()

    async def send(self, message: dict[str, Any]) -> None:
        await self._send(proto.dumps(message))

    async def send_frame(self, frame: MouthFrame | None) -> None:
        """``current_frame``: binary when the client asked for it and there is a frame."""
        if frame is not None:
            self.metrics.frames_sent.inc()
            self.metrics.frame_latency.observe(frame.latency_ms / 1000.0)
            if self.binary_frames:
                await self._send(proto.binary_frame(frame))
                return
        model = self.session.model.name if self.session.model else None  # for the idle answer
        await self.send(proto.frame_reply(frame, model))

    async def send_error(
        self, code: str, message: str, request_type: str | None = None, **details: Any
    ) -> None:
        log.info("session %s: %s: %s", self.id, code, message)
        self.metrics.errors.labels(code).inc()
        await self.send(proto.error_reply(code, message, request_type, **details))

    # ------------------------------------------------------------------------ lifetime

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._choose_first_model(), name=f"model-{self.id}")
                tg.create_task(self._schedule(), name=f"scheduler-{self.id}")
                await self._read()
                raise _Closing
        except* _Closing:
            pass
        finally:
            if self.stream is not None:
                await self.stream.close()

    def _make(self, job: InferenceJob) -> Awaitable[list[tuple[bytes, Any]] | None]:
        """One try at the job's mouths from the lip-sync service (None: interrupted)."""
        if self.stream is not None:
            return self.stream.generate(job)
        return self.client.generate(job, self.id)

    async def _while_unreachable(
        self, call: Callable[[], Awaitable[T]], wanted: Callable[[], bool]
    ) -> T | None:
        """``call()``, retried with backoff while the lip-sync service is unreachable.

        The client is told once that the service is down, and the log once that it is back.
        Returns None, without calling again, as soon as ``wanted()`` is False.
        """
        delay = _RETRY_FIRST_S
        while wanted():
            try:
                result = await call()
            except ServiceUnavailable as exc:
                await self._report_service_down(str(exc))
                await asyncio.sleep(delay)
                delay = min(2 * delay, _RETRY_MAX_S)
                continue
            self._service_back()
            return result
        return None

    async def _choose_first_model(self) -> None:
        def no_model() -> bool:
            return self.session.model is None

        while no_model():
            models = await self._while_unreachable(self.client.models, no_model)
            if models and no_model():
                self.session.set_model(models[sorted(models)[0]])
                self.wake.set()
            elif models is not None and not models:
                await asyncio.sleep(_RETRY_MAX_S)

    async def _report_service_down(self, detail: str) -> None:
        if not self.service_down_reported:
            self.service_down_reported = True
            await self.send_error(
                "lipsync_unavailable",
                f"the lip-sync service at {self.client.address} cannot be reached ({detail}); "
                "retrying, frames resume by themselves",
            )

    def _service_back(self) -> None:
        if self.service_down_reported:
            log.info("session %s: lip-sync service reachable again", self.id)
        self.service_down_reported = False

    # ------------------------------------------------------------------------ jobs

    async def _schedule(self) -> None:
        assert self._tg is not None
        while True:
            await self.wake.wait()
            self.wake.clear()
            while (job := self.session.next_job()) is not None:
                self._tg.create_task(self._run_job(job), name=f"job-{self.id}-{job.job_id}")

    async def _run_job(self, job: InferenceJob) -> None:
        asked = time.monotonic()
        try:
            mouths = await self._while_unreachable(
                lambda: self._make(job),
                lambda: self.session.is_in_flight(job),  # False once interrupted
            )
        except (InvalidInput, Overloaded, ModelNotFound) as exc:
            if self.session.is_in_flight(job):
                self.metrics.frames_dropped.inc(job.frame_count)
            self.session.fail(job)
            first = job.timeline_first_frame
            await self.send_error(
                "lipsync_failed",
                f"frames {first}..{first + job.frame_count - 1} were dropped: {exc}",
            )
            self.wake.set()
            return
        if mouths is None:
            return
        if self.session.is_in_flight(job):
            self.metrics.frames_made.inc(len(mouths))
            self.metrics.round_trip.observe(time.monotonic() - asked)
        released = self.session.complete(job, mouths)
        if self.settings.debug_frame_generation:
            log.info(
                "session %s: frames %d..%d made, %d released",
                self.id,
                job.timeline_first_frame,
                job.timeline_first_frame + job.frame_count - 1,
                released,
            )
        await self._deliver(released)
        self.wake.set()

    async def _deliver(self, released: int) -> None:
        if self.push_frames:
            frames = self.session.take_frames()
            if frames:
                self.wake.set()  # the frame buffer has room again: plan the next jobs
            for frame in frames:
                await self.send_frame(frame)
        elif released:
            await self.send(proto.frames_generated_reply(released, self.session.frames_buffered))

    # ------------------------------------------------------------------------ messages

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                try:
                    if isinstance(message, bytes):
                        await self._on_audio(
                            AudioChunk.from_bytes(message, self.session.sample_rate)
                        )
                    else:
                        parsed = proto.parse_message(message)
                        if self.settings.debug_websocket_messages:
                            log.info("session %s: %s", self.id, parsed.TYPE)
                        await self._handlers[type(parsed)](parsed)
                except proto.ProtocolError as exc:
                    await self.send_error(exc.code, str(exc), exc.request_type)
                except InvalidInput as exc:
                    kind = "bad_audio" if isinstance(message, bytes) else "bad_field"
                    await self.send_error(kind, str(exc))

    async def _on_audio(self, chunk: AudioChunk) -> None:
        try:
            self.session.push_audio(chunk)
        except Overloaded as exc:
            await self.send_error(
                "audio_buffer_full",
                str(exc),
                "audio_chunk",
                refused_audio_ms=round(1000.0 * chunk.duration, 1),
                audio_buffer_ms=round(self.session.audio_queued_ms, 1),
            )
            return
        if self.settings.debug_audio_processing:
            log.info(
                "session %s: %d samples, %.0f ms queued",
                self.id,
                len(chunk),
                self.session.audio_queued_ms,
            )
        self.wake.set()

    async def _on_audio_message(self, message: proto.AudioChunkMessage) -> None:
        await self._on_audio(message.chunk(self.session.sample_rate))

    async def _on_get_frame(self, message: proto.GetFrame) -> None:
        frame = self.session.pop_frame()
        if frame is not None:
            self.wake.set()  # the frame buffer has room again: plan the next jobs
        await self.send_frame(frame)

    async def _on_get_stats(self, message: proto.GetStats) -> None:
        await self.send(self.stats())

    async def _on_end_of_speech(self, message: proto.EndOfSpeech) -> None:
        left = self.session.end_of_speech()
        self.wake.set()
        await self.send(proto.speech_ended_reply(left, self.session.next_frame_index))

    async def _on_interrupt(self, message: proto.Interrupt) -> None:
        dropped, dropped_ms = self.session.interrupt()
        self.metrics.frames_dropped.inc(dropped)
        if self.stream is not None:
            await self.stream.interrupt()
        await self.send(proto.interrupted_reply(dropped, dropped_ms, self.session.next_frame_index))

    async def _on_ping(self, message: proto.Ping) -> None:
        await self.send(proto.pong_reply(message.fields, time.time()))

    async def _on_set_model(self, message: proto.SetModel) -> None:
        name = message.model_name
        try:
            model = await self.client.model(name)
        except ModelNotFound as exc:
            raise proto.ProtocolError("unknown_model", str(exc), "set_model") from None
        except ServiceUnavailable as exc:
            await self.send_error(
                "lipsync_unavailable",
                f"cannot switch to {name!r}: the lip-sync service is unreachable ({exc})",
                "set_model",
            )
            return
        self.session.set_model(model)
        self.wake.set()
        await self.send(
            proto.model_changed_reply(
                model.name,
                model.frame_count,
                self.session.lookahead_ms,
                self.pipeline_latency_ms(),
                self.session.latency_measured,
            )
        )

    async def _on_configure(self, message: proto.Configure) -> None:
        if message.audio_sample_rate is not None:
            try:
                self.session.set_sample_rate(message.audio_sample_rate)
            except InvalidInput as exc:
                raise proto.ProtocolError("bad_field", str(exc), "configure") from None
        if message.binary_frames is not None:
            self.binary_frames = message.binary_frames
        if message.push_frames is not None:
            self.push_frames = message.push_frames
            if message.push_frames:
                await self._deliver(0)
        await self.send(
            proto.configured_reply(
                push_frames=self.push_frames,
                binary_frames=self.binary_frames,
                audio_sample_rate=self.session.sample_rate,
                audio_chunk_duration_ms=self.settings.audio_chunk_duration_ms,
                inference_batch_size=self.session.batch_size,
                audio_buffer_size_ms=self.session.audio_buffer_ms,
                lookahead_ms=self.session.lookahead_ms,
                pipeline_latency_ms=self.pipeline_latency_ms(),
                latency_measured=self.session.latency_measured,
            )
        )

    # ------------------------------------------------------------------------ stats

    def pipeline_latency_ms(self) -> float:
        """How long the client should delay its audio so that frames are there in time."""
        return self.session.pipeline_latency_ms()

    def stats(self) -> dict[str, Any]:
        s = self.session
        queued = s.audio_queued_ms
        return proto.stats_reply(
            audio_buffer_fill=int(-(-queued // self.settings.audio_chunk_duration_ms)),
            frame_buffer_fill=s.frames_buffered,
            can_generate=s.model is not None and self.client.connected,
            current_model=s.model.name if s.model else None,
            runtime=s.model.runtime if s.model else None,
            session_id=self.id,
            audio_buffer_ms=round(queued, 1),
            audio_sample_rate=s.sample_rate,
            lookahead_ms=round(s.lookahead_ms, 1),
            pipeline_latency_ms=round(self.pipeline_latency_ms(), 1),
            latency_measured=s.latency_measured,
            feature_layout=s.layout.to_dict(),
            frames_generated=s.frames_generated,
            frames_sent=s.frames_sent,
            frames_dropped=s.frames_dropped,
            latency_ms=s.timings.latency.summary(),
            inference_ms=s.timings.round_trip.summary(),
            lipsync_service="connected" if self.client.connected else "unavailable",
            next_frame_index=s.next_frame_index,
            push_frames=self.push_frames,
            binary_frames=self.binary_frames,
        )
