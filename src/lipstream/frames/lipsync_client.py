"""The frame generator's client of the lip-sync service: deadlines, reconnection, errors mapped.

gRPC channels reconnect by themselves with exponential backoff (capped here at 2 s); a call made
while the service is down fails at once with ServiceUnavailable instead of hanging, so a
session can say so and try again.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc

from lipstream.audio.timeline import SYNCTALK2D, WINDOW_ROWS, FeatureLayout
from lipstream.errors import (
    InvalidInput,
    LipstreamError,
    ModelNotFound,
    Overloaded,
    ServiceUnavailable,
)
from lipstream.frames.lipsync_stream import LipSyncStream, Mouths, mouths_of
from lipstream.frames.session import InferenceJob, SessionModel
from lipstream.service import lipsync_pb2 as pb
from lipstream.service import lipsync_pb2_grpc as pb_grpc
from lipstream.settings import Settings

# gRPC's own balancing over every address the target resolves to (``ipv4:a:p,b:p``,
# ``dns:///name:port``): round robin over the instances whose standard health service says
# SERVING, so one that is loading or gone is skipped, and one that recovers rejoins.
# Unary calls that fail UNAVAILABLE before reaching a service (an instance that just died)
# are retried by gRPC itself on the next instance; a stream is reopened by the session.
_SERVICE = pb.DESCRIPTOR.services_by_name["LipSyncService"].full_name
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": _SERVICE},
    "methodConfig": [
        {
            "name": [
                {"service": _SERVICE, "method": "ListModels"},
                {"service": _SERVICE, "method": "GenerateBatchInference"},
            ],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
_CHANNEL_OPTIONS = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 20000),
]
_MODELS_TTL_S = 5.0


def session_model(info: pb.ModelInfo) -> SessionModel:
    """A ``ModelInfo`` as the session needs it. A service that does not say the feature
    layout (no ``feature_alignment``, as the guide's) is taken to use SyncTalk_2D's."""
    layout = SYNCTALK2D
    if info.feature_alignment:
        after = info.feature_lookahead_frames
        try:
            layout = FeatureLayout(WINDOW_ROWS - 1 - after, after, info.feature_alignment)
        except InvalidInput as exc:
            raise InvalidInput(f"the lip-sync service's model {info.name}: {exc}") from None
    return SessionModel(info.name, info.frame_count, layout, info.runtime)


def client_tls(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS to the lip-sync service: with GRPC_TLS_CA_FILE (trusting that CA), or when this
    server serves TLS itself (TLS_CERT_FILE; trusting the system's CAs); else None."""
    if settings.grpc_tls_ca_file is not None:
        return grpc.ssl_channel_credentials(settings.grpc_tls_ca_file.read_bytes())
    if settings.tls:
        return grpc.ssl_channel_credentials()
    return None


def _map_error(exc: grpc.aio.AioRpcError, what: str) -> LipstreamError:
    return map_status(exc.code(), exc.details() or "", what)


def map_status(code: grpc.StatusCode, details: str, what: str) -> LipstreamError:
    """The lipstream error a call's status stands for (``what``: the call, for the message)."""
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Overloaded(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Overloaded(f"the lip-sync service did not answer {what} in time")
    return ServiceUnavailable(f"lip-sync service: {code.name.lower()}: {details}")


class LipSyncClient:
    """Async client of one lip-sync service address."""

    def __init__(
        self,
        address: str,
        deadline_ms: int = 5000,
        tls: grpc.ChannelCredentials | None = None,
        tls_server_name: str = "",
    ) -> None:
        """``address``: any gRPC target (``host:port``, ``ipv4:a:p,b:p``, ``dns:///name:port``);
        ``tls``: credentials to reach the service over TLS (``client_tls``);
        ``tls_server_name``: the name the service's certificate must carry, when not the
        target's own host (a list of addresses has none)."""
        self.address = address
        self.deadline_s = deadline_ms / 1000.0
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        else:
            options = list(_CHANNEL_OPTIONS)
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            self._channel = grpc.aio.secure_channel(address, tls, options=options)
        self._stub = pb_grpc.LipSyncServiceStub(self._channel)
        self._models: dict[str, SessionModel] = {}
        self._models_at = -1e9
        self._models_lock = asyncio.Lock()
        self.connected = False

    async def close(self) -> None:
        await self._channel.close()

    def open_stream(self, session_id: str) -> LipSyncStream:
        """A ``StreamLipSync`` stream for one session (its call opens with the first job)."""
        return LipSyncStream(
            self._stub, session_id, self.deadline_s, map_status, self._set_connected
        )

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected

    def known_models(self) -> dict[str, SessionModel]:
        """The models the last ``ListModels`` answered (no call; empty before the first)."""
        return dict(self._models)

    async def models(self, refresh: bool = False) -> dict[str, SessionModel]:
        """The service's models by name (cached for a few seconds)."""
        async with self._models_lock:
            if refresh or time.monotonic() - self._models_at > _MODELS_TTL_S:
                try:
                    answer = await self._stub.ListModels(
                        pb.ListModelsRequest(), timeout=self.deadline_s
                    )
                except grpc.aio.AioRpcError as exc:
                    self.connected = False
                    raise _map_error(exc, "ListModels") from None
                self.connected = True
                self._models = {m.name: session_model(m) for m in answer.models}
                self._models_at = time.monotonic()
            return dict(self._models)

    async def model(self, name: str) -> SessionModel:
        """One model's facts; ModelNotFound names the ones there are."""
        models = await self.models()
        if name not in models:
            models = await self.models(refresh=True)
        if name not in models:
            known = ", ".join(sorted(models)) or "none loaded"
            raise ModelNotFound(f"unknown model {name!r}; the lip-sync service has: {known}")
        return models[name]

    async def generate(self, job: InferenceJob, session_id: str = "") -> Mouths:
        """The job's mouths (JPEG, bounds), in frame order."""
        request = pb.BatchInferenceRequest(
            model_name=job.model_name,
            frame_ids=job.frame_ids,
            audio_pcm=job.audio.to_bytes(),
            audio_sample_rate=job.audio.sample_rate,
            audio_start_sample=job.audio_start_sample,
            first_frame_index=job.utterance_first_frame,
            session_id=session_id,
        )
        try:
            answer = await self._stub.GenerateBatchInference(request, timeout=self.deadline_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self.connected = False
            raise _map_error(exc, "GenerateBatchInference") from None
        self.connected = True
        return mouths_of(job, answer)
