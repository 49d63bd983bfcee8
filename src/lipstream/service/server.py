"""The gRPC lip-sync service: ``LipSyncService`` and ``grpc.health.v1`` on one ``grpc.aio`` server.

``start_lipsync_server`` binds the port, loads the model packages and returns a handle (another
command can run the service inside its own event loop); ``run_lipsync_server`` is the blocking
entry of ``lipstream grpc``, stopping cleanly on SIGINT or SIGTERM. Requests are checked on the
event loop; audio decoding, features, inference and JPEG encoding run on the batcher's worker.
Errors map to status codes in one place (``status_code``); the message names the problem.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from lipstream.errors import (
    InvalidInput,
    LipstreamError,
    ModelNotFound,
    Overloaded,
    PackageError,
    ServiceUnavailable,
)
from lipstream.geometry import PREDICTION_SHAPE
from lipstream.lifecycle import serve_until_signalled
from lipstream.logs import announce, configure_logging
from lipstream.metrics import LipSyncMetrics, MetricsServer
from lipstream.model.package import check_name
from lipstream.service import lipsync_pb2, lipsync_pb2_grpc
from lipstream.service.batcher import Batcher, DeadlineExceeded, FrameResult, Job
from lipstream.service.inputs import FrameRequest, check_frames, decode_audio
from lipstream.service.registry import ModelInfo, ModelRegistry, ServedModel
from lipstream.service.stream_rpc import serve_stream
from lipstream.service.stream_state import AudioMissing, StreamState
from lipstream.settings import Settings, dial_host

SERVICE_NAME = lipsync_pb2.DESCRIPTOR.services_by_name["LipSyncService"].full_name
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
STOP_GRACE_S = 5.0
MAX_CONNECTION_AGE_S = 300
MAX_CONNECTION_AGE_GRACE_S = 600

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of gives its status.
_STATUS: tuple[tuple[type[LipstreamError], grpc.StatusCode], ...] = (
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (AudioMissing, grpc.StatusCode.OUT_OF_RANGE),
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ServiceUnavailable, grpc.StatusCode.UNAVAILABLE),
    (PackageError, grpc.StatusCode.FAILED_PRECONDITION),
)


# Refusals the operator should hear of (the client's own mistakes are logged at INFO).
_LOG_LEVEL = {
    grpc.StatusCode.INTERNAL: logging.ERROR,
    grpc.StatusCode.RESOURCE_EXHAUSTED: logging.WARNING,
    grpc.StatusCode.DEADLINE_EXCEEDED: logging.WARNING,
    grpc.StatusCode.FAILED_PRECONDITION: logging.WARNING,
}


def status_code(exc: LipstreamError) -> grpc.StatusCode:
    """The gRPC status an error of lipstream's hierarchy is answered with."""
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def model_info_message(info: ModelInfo) -> lipsync_pb2.ModelInfo:
    """A registry ``ModelInfo`` as the ``ModelInfo`` message (the field names are the same)."""
    return lipsync_pb2.ModelInfo(**dataclasses.asdict(info))


class LipSyncServicer(lipsync_pb2_grpc.LipSyncServiceServicer):
    """The RPCs of ``LipSyncService`` over a model registry and a batcher."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        batcher: Batcher,
        metrics: LipSyncMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.batcher = batcher
        self.metrics = metrics or LipSyncMetrics()
        self.metrics.models_loaded.set_function(lambda: len(self.registry.names()))
        self.ready = False  # set once the models of the models folder are loaded

    async def GenerateBatchInference(
        self, request: lipsync_pb2.BatchInferenceRequest, context: grpc.aio.ServicerContext
    ) -> lipsync_pb2.BatchInferenceResponse:
        return await self._answer(
            context, "GenerateBatchInference", self._generate(request, context)
        )

    async def LoadModel(
        self, request: lipsync_pb2.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> lipsync_pb2.LoadModelResponse:
        return await self._answer(context, "LoadModel", self._load(request))

    async def ListModels(
        self, request: lipsync_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> lipsync_pb2.ListModelsResponse:
        infos = [model_info_message(loaded.info) for loaded in self.registry.models()]
        self.metrics.answered("ListModels", "OK")
        return lipsync_pb2.ListModelsResponse(models=infos)

    async def _answer(self, context: grpc.aio.ServicerContext, rpc: str, work: Awaitable[_T]) -> _T:
        """Run an RPC's work, answering lipstream's errors with their status and message."""
        try:
            answer = await work
        except LipstreamError as exc:
            code = status_code(exc)
            self.metrics.answered(rpc, code.name)
            level = _LOG_LEVEL.get(code, logging.INFO)
            _log.log(level, "%s refused (%s): %s", rpc, code.name, exc)
            await context.abort(code, str(exc))
        except Exception as exc:
            self.metrics.answered(rpc, grpc.StatusCode.INTERNAL.name)
            _log.exception("%s failed", rpc)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"{rpc} failed: {type(exc).__name__}: {exc}"
            )
        self.metrics.answered(rpc, "OK")
        return answer

    def _require_ready(self) -> None:
        if not self.ready:
            raise ServiceUnavailable(
                "the lip-sync service is still loading its models; retry in a few seconds"
            )

    async def _generate(
        self, request: lipsync_pb2.BatchInferenceRequest, context: grpc.aio.ServicerContext
    ) -> lipsync_pb2.BatchInferenceResponse:
        received = time.perf_counter()
        self._require_ready()
        loaded = self.registry.get(request.model_name)
        frames = FrameRequest.from_message(
            request,
            frame_count=loaded.info.frame_count,
            default_sample_rate=self.settings.audio_sample_rate,
            layout=loaded.layout,
        )
        remaining = context.time_remaining()
        job = Job(
            generator=loaded.model.generator,
            frame_ids=frames.frame_ids,
            features=partial(frames.features, loaded.encoder),
            deadline=None if remaining is None else time.monotonic() + remaining,
        )
        return await self._make(job, loaded, frames.first_frame_index, received, frames.session_id)

    async def _make(
        self, job: Job, loaded: ServedModel, first: int, received: float, session_id: str
    ) -> lipsync_pb2.BatchInferenceResponse:
        """Run a job on the batcher, count it, and answer with its mouths."""
        result = await self.batcher.submit(job)
        self.metrics.made(job.frames, result.queue_ms / 1000.0)
        return _frames_answer(loaded, job.frame_ids, first, result, received, session_id)

    async def StreamLipSync(
        self,
        request_iterator: AsyncIterator[lipsync_pb2.StreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[lipsync_pb2.StreamResponse]:
        self.metrics.streams_active.inc()
        try:
            self._require_ready()
            answers = serve_stream(
                request_iterator,
                self._stream_frames,
                status_code,
                lambda code: self.metrics.answered("StreamLipSync", code.name),
            )
            async for response in answers:
                yield response
        except LipstreamError as exc:
            code = status_code(exc)
            self.metrics.errors.labels(code.name).inc()  # the stream as a whole
            _log.log(
                _LOG_LEVEL.get(code, logging.INFO), "StreamLipSync ended (%s): %s", code.name, exc
            )
            await context.abort(code, str(exc))
        finally:
            self.metrics.streams_active.dec()

    async def _stream_frames(
        self, state: StreamState, request: lipsync_pb2.StreamFrames
    ) -> lipsync_pb2.BatchInferenceResponse:
        """One frames request of a stream: its features come from the stream's held audio."""
        received = time.perf_counter()
        loaded = self.registry.get(request.model_name)
        first = request.first_frame_index
        ids = check_frames(loaded.name, request.frame_ids, first, loaded.info.frame_count)
        utterance = state.utterance(request.utterance)
        job = Job(
            generator=loaded.model.generator,
            frame_ids=ids,
            # the raw encoder: the stream computes each window once, no cache needed
            features=partial(
                utterance.features, loaded.model.encoder, first, len(ids), loaded.layout
            ),
            deadline=(
                time.monotonic() + request.deadline_ms / 1000.0 if request.deadline_ms > 0 else None
            ),
        )
        return await self._make(job, loaded, first, received, request.session_id)

    async def _load(self, request: lipsync_pb2.LoadModelRequest) -> lipsync_pb2.LoadModelResponse:
        self._require_ready()
        name = check_name(request.model_name)
        warmup = request.audio_override if request.HasField("audio_override") else None
        loaded = await asyncio.to_thread(self._load_blocking, name, request.package_path, warmup)
        info = loaded.info
        return lipsync_pb2.LoadModelResponse(
            success=True,
            model_name=name,
            message=(
                f"loaded {name} from {loaded.path} ({info.runtime}, {info.frame_count} frames, "
                f"{info.fps} fps)"
            ),
            initialization_time_ms=round(loaded.load_ms),
            model=model_info_message(info),
        )

    def _load_blocking(self, name: str, package_path: str, warmup_b64: str | None) -> ServedModel:
        warmup = None
        if warmup_b64:
            warmup = decode_audio(warmup_b64, self.settings.audio_sample_rate, "audio_override")
        return self.registry.load(name, package_path, warmup)


def _frames_answer(
    loaded: ServedModel,
    frame_ids: Sequence[int],
    first_frame_index: int,
    result: FrameResult,
    received: float,
    session_id: str,
) -> lipsync_pb2.BatchInferenceResponse:
    """The answer carrying one request's mouths (``received``: its perf_counter arrival)."""
    bounds = loaded.model.package.bounds
    processing_ms = round(result.compute_ms)
    responses = [
        lipsync_pb2.InferenceResponse(
            success=True,
            prediction_data=jpeg,
            bounds=[float(v) for v in bounds[frame_id]],
            processing_time_ms=processing_ms,
            model_name=loaded.name,
            frame_id=frame_id,
            prediction_shape=PREDICTION_SHAPE,
            frame_index=first_frame_index + i,
        )
        for i, (frame_id, jpeg) in enumerate(zip(frame_ids, result.jpegs, strict=True))
    ]
    total_ms = 1000.0 * (time.perf_counter() - received)
    _log.debug(
        "session %s: %d frames of %s from frame %d in %.1f ms (batch of %d, queued %.1f ms)",
        session_id or "-",
        len(responses),
        loaded.name,
        first_frame_index,
        total_ms,
        result.batch_frames,
        result.queue_ms,
    )
    return lipsync_pb2.BatchInferenceResponse(
        responses=responses,
        total_processing_time_ms=round(total_ms),
        batch_frames=result.batch_frames,
        queue_time_ms=result.queue_ms,
    )


@dataclass(eq=False)
class LipSyncServer:
    """A running lip-sync service: where it listens and what it serves."""

    server: grpc.aio.Server
    host: str
    port: int  # the port actually bound (a free one when 0 was asked for)
    registry: ModelRegistry
    batcher: Batcher
    servicer: LipSyncServicer
    health: health_aio.HealthServicer
    metrics_server: MetricsServer
    load_errors: dict[str, str] = field(default_factory=dict)  # package folder -> why skipped
    _stopped: bool = False

    @property
    def address(self) -> str:
        """``host:port`` for a client on this machine to dial."""
        return f"{dial_host(self.host)}:{self.port}"

    async def stop(self, grace: float | None = STOP_GRACE_S) -> None:
        """Report NOT_SERVING, let RPCs in flight finish for ``grace`` s, stop the worker."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await asyncio.to_thread(self.batcher.close)
        await asyncio.to_thread(self.metrics_server.stop)
        _log.info("lip-sync service on port %d stopped", self.port)

    async def wait_for_termination(self) -> None:
        """Wait until the server stops."""
        await self.server.wait_for_termination()


async def start_lipsync_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    registry: ModelRegistry | None = None,
) -> LipSyncServer:
    """Bind, load the models and serve; returns once the service is ready for inference.

    ``host`` and ``port`` override HOST and GRPC_SERVER_PORT (port 0 takes a free port, see
    ``.port``). ``registry`` replaces the one built from MODELS_DIR, RUNTIME and DEVICE.
    With TLS_CERT_FILE and TLS_KEY_FILE it serves gRPC over TLS. ``GET /metrics`` answers on
    GRPC_METRICS_PORT. Prints the guide's start-up lines. Raises LipstreamError when a port
    cannot be bound.
    """
    configure_logging(settings, "grpc")
    host = settings.host if host is None else host
    port = settings.grpc_server_port if port is None else port
    registry = registry or ModelRegistry(settings.models_dir, settings.runtime, settings.device)
    metrics = LipSyncMetrics()

    batcher = Batcher(
        batch_window_ms=settings.batch_window_ms,
        max_batch_frames=settings.max_batch_frames,
        max_queued_frames=settings.max_queued_frames,
        on_batch=metrics.batched,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # clients reconnect now and then, so they look up `dns:///` targets again and
            # spread onto instances that started after them; streams cut after the grace
            # reopen (and resume) by themselves
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_S * 1000),
        ]
    )
    servicer = LipSyncServicer(settings, registry, batcher, metrics)
    lipsync_pb2_grpc.add_LipSyncServiceServicer_to_server(servicer, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    address = f"{host}:{port}"
    try:
        if settings.tls:
            bound = server.add_secure_port(address, server_credentials(settings))
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        bound = 0
        reason = str(exc)
    else:
        reason = "the port is in use or the address is not on this machine"
    if not bound:
        batcher.close()
        raise LipstreamError(f"cannot listen on {address}: {reason} (set GRPC_SERVER_PORT/HOST)")
    try:
        metrics_server = MetricsServer(metrics.registry, host, settings.grpc_metrics_port)
    except OSError as exc:
        batcher.close()
        raise LipstreamError(
            f"cannot serve metrics on {host}:{settings.grpc_metrics_port}: {exc} "
            "(set GRPC_METRICS_PORT; 0 takes any free port)"
        ) from None
    handle = LipSyncServer(server, host, bound, registry, batcher, servicer, health, metrics_server)
    announce(f"gRPC Lip Sync Service starting on port {bound}")
    _log.info(
        "gRPC %s; metrics on http://%s:%d/metrics",
        "over TLS" if settings.tls else "without TLS",
        host,
        metrics_server.port,
    )
    await server.start()
    try:
        announce("Loading models...")
        handle.load_errors = await asyncio.to_thread(registry.load_all)
    except BaseException:
        await handle.stop(0)
        raise
    servicer.ready = True
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    names = registry.names()
    _log.info(
        "serving %d model(s) on %s: %s", len(names), handle.address, ", ".join(names) or "none"
    )
    announce("Service ready for inference")
    return handle


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """gRPC's TLS credentials from TLS_KEY_FILE and TLS_CERT_FILE."""
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    key = settings.tls_key_file.read_bytes()
    chain = settings.tls_cert_file.read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


def run_lipsync_server(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM (the ``lipstream grpc`` command); returns the exit code."""
    asyncio.run(serve_until_signalled(start_lipsync_server(settings)))
    return 0
