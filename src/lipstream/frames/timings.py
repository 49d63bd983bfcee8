"""How long frames take, and the delay a client should play its audio with.

Every session measures two things per frame: its latency (from the arrival of the audio that
completes it to the frame being ready) and the round trip of the job that made it. The
server keeps the same measurements over all its sessions. From them comes the processing
estimate, and from that the pipeline latency a client delays its audio by so that each
frame is there when its audio plays (see docs/frame-protocol.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

OWN_ESTIMATE_FRAMES = 50  # two seconds of speech: a session's own frames then take over
FIRST_ESTIMATE_MS = 150.0  # processing time guessed before any frame was measured
ESTIMATE_PERCENTILE = 95  # of recent frames, the share the estimate covers


class Latencies:
    """A bounded window of recent latencies with percentiles."""

    def __init__(self, size: int = 500) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self._values, q)) if self._values else None

    def summary(self) -> dict[str, float | None]:
        p50, p95 = self.percentile(50), self.percentile(95)
        return {
            "p50": None if p50 is None else round(p50, 1),
            "p95": None if p95 is None else round(p95, 1),
        }


@dataclass
class Timings:
    """Recent frame latencies and job round trips in ms, of one session or of a whole server."""

    latency: Latencies = field(default_factory=Latencies)
    round_trip: Latencies = field(default_factory=Latencies)

    def estimate_ms(self) -> float | None:
        """The p95 frame latency, but never below the p95 round trip of a job; None: no data.

        The round trip is the floor because latencies say nothing when every frame was ready
        before it was due (clips sent ahead), yet a live stream still waits for each job.
        """
        values = [w.percentile(ESTIMATE_PERCENTILE) for w in (self.latency, self.round_trip)]
        known = [v for v in values if v is not None]
        return max(known) if known else None


def processing_estimate_ms(own: Timings, shared: Timings | None) -> float:
    """What to expect between a frame's audio and the frame (Timings.estimate_ms).

    p95, not a worst case: the delay is added to every word the listener hears, so it follows
    what nearly every frame needs; the rare frame later than that is covered by the client's
    own margin, or the client holds the previous mouth for it (docs/console.md). Until a
    session has measured
    ``OWN_ESTIMATE_FRAMES`` frames, the server's recent frames over all sessions (``shared``:
    the load is the server's, not the session's) stand in, and before any frame a guess.
    """
    timings = own
    if len(own.latency) < OWN_ESTIMATE_FRAMES and shared is not None:
        timings = shared
    estimate = timings.estimate_ms()
    return FIRST_ESTIMATE_MS if estimate is None else estimate


def pipeline_latency_ms(lookahead_ms: float, processing_ms: float) -> float:
    """How long a client should delay its audio, counted from when it sent its first chunk, so
    that frames are there in time.

    A frame needs ``lookahead_ms`` of audio past its start, and making it takes
    ``processing_ms`` from the arrival of the chunk that completes that audio. No chunk term:
    a live source's chunk arrives when its last sample was captured, so every sample after
    the first chunk arrives no later than its place on the timeline counted from that chunk's
    arrival. Margins for the client's own decoding and scheduling are the client's.
    """
    return lookahead_ms + processing_ms
