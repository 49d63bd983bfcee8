"""Prometheus metrics of the three services, each in its own registry (docs/operations.md).

Every running service makes its own metrics object, so a process that runs several (``lipstream
serve``, the tests) answers each port with that service's figures alone. Names follow
Prometheus' conventions: the ``lipstream_`` prefix, ``_total`` counters, ``_seconds``
histograms in base units. ``exposition`` renders a registry in the text format for
``GET /metrics``; the lip-sync service serves it on a port of its own (``MetricsServer``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

_log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
COMPUTE_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.2, 0.5, 1.0, 2.0)
BATCH_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48, 64)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


@dataclass(eq=False)
class WebMetrics:
    """The web server's figures."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "lipstream_http_requests_total",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "lipstream_errors_total", "answers with an error, by HTTP status", ["code"], registry=r
        )
        self.token_calls = Counter(
            "lipstream_token_requests_total",
            "POST /token calls (OpenAI Realtime keys) by outcome (HTTP status)",
            ["outcome"],
            registry=r,
        )
        self.session_tokens = Counter(
            "lipstream_session_token_requests_total",
            "POST /api/session calls (frame generator tokens) by outcome (HTTP status)",
            ["outcome"],
            registry=r,
        )
        self.tts_calls = Counter(
            "lipstream_tts_requests_total",
            "POST /api/tts calls by outcome (HTTP status)",
            ["outcome"],
            registry=r,
        )
        self.rate_limited = Counter(
            "lipstream_rate_limited_total",
            "requests refused with 429, by route",
            ["route"],
            registry=r,
        )


@dataclass(eq=False)
class FrameMetrics:
    """The frame generator's figures."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.sessions_active = Gauge(
            "lipstream_sessions_active", "WebSocket sessions open now", registry=r
        )
        self.sessions_opened = Counter(
            "lipstream_sessions_opened_total", "WebSocket sessions accepted", registry=r
        )
        self.sessions_refused = Counter(
            "lipstream_sessions_refused_total",
            "WebSocket connections refused, by reason",
            ["reason"],
            registry=r,
        )
        self.frames_made = Counter(
            "lipstream_frames_made_total",
            "mouth frames received from the lip-sync service",
            registry=r,
        )
        self.frames_sent = Counter(
            "lipstream_frames_sent_total", "mouth frames sent to clients", registry=r
        )
        self.frames_dropped = Counter(
            "lipstream_frames_dropped_total",
            "frames dropped (interrupts, failed requests)",
            registry=r,
        )
        self.frame_latency = Histogram(
            "lipstream_frame_latency_seconds",
            "from the arrival of the audio a frame needs to the frame being ready",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.round_trip = Histogram(
            "lipstream_lipsync_round_trip_seconds",
            "from a job's request to the lip-sync service to its answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pipeline_latency = Gauge(
            "lipstream_pipeline_latency_seconds",
            "how long a new session is told to delay its audio (lookahead, chunk, processing)",
            registry=r,
        )
        self.errors = Counter(
            "lipstream_errors_total",
            "error messages sent to clients, by code",
            ["code"],
            registry=r,
        )
        self.lipsync_reachable = Gauge(
            "lipstream_lipsync_reachable", "1 while the lip-sync service answers", registry=r
        )


@dataclass(eq=False)
class LipSyncMetrics:
    """The lip-sync service's figures."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "lipstream_lipsync_requests_total",
            "requests answered, by RPC and gRPC status (a stream's frames requests count "
            "under StreamLipSync)",
            ["rpc", "code"],
            registry=r,
        )
        self.errors = Counter(
            "lipstream_errors_total", "requests refused, by gRPC status", ["code"], registry=r
        )
        self.streams_active = Gauge(
            "lipstream_streams_active", "StreamLipSync streams open now", registry=r
        )
        self.frames_made = Counter("lipstream_frames_made_total", "mouth frames made", registry=r)
        self.inference = Histogram(
            "lipstream_inference_seconds",
            "one batch: features, the generator's forward pass",
            buckets=COMPUTE_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "lipstream_queue_seconds",
            "a request's wait for its batch to start",
            buckets=COMPUTE_BUCKETS,
            registry=r,
        )
        self.batch_frames = Histogram(
            "lipstream_batch_frames", "frames per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.models_loaded = Gauge(
            "lipstream_models_loaded", "model packages served now", registry=r
        )

    def batched(self, frames: int, seconds: float) -> None:
        """One forward pass of ``frames`` frames that took ``seconds`` (features included)."""
        self.batch_frames.observe(frames)
        self.inference.observe(seconds)

    def made(self, frames: int, queue_s: float) -> None:
        """A request's ``frames`` mouths made, after ``queue_s`` waiting for their batch."""
        self.frames_made.inc(frames)
        self.queue.observe(queue_s)

    def answered(self, rpc: str, code: str) -> None:
        """Count one answer (``code``: "OK" or a gRPC status name)."""
        self.requests.labels(rpc, code).inc()
        if code != "OK":
            self.errors.labels(code).inc()


class MetricsServer:
    """``GET /metrics`` at ``http://host:port/`` (port 0: any free one), on prometheus-client's
    own threaded HTTP server."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server: WSGIServer
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server, self._thread = server, thread
        self.port: int = server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
