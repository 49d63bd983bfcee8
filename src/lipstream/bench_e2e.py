"""``lipstream bench e2e``: real speech through the running system, N sessions at once.

Each session streams a speech file in 40 ms chunks at real-time pace over the frame generator's
WebSocket (``push_frames``; frames come as binary messages, or as the guide's base64 JSON with
``--json-frames``), ends it with ``end_of_speech`` and records every frame. Reported per session
count: sustained frames/s per session while speech streamed (25 means it kept up), the latency
from the arrival of the audio that completes a frame to the frame being ready (server clock,
frames completed while speech streamed, beyond the model's lookahead, which no system can
avoid), the same seen by the client for every frame including the end-of-speech tail (frame
received minus the moment its audio was sent, or was due at real-time pace), and frames missing.

And what a listener hears (``listener`` in each row): the console plays the voice delayed by
the server's ``pipeline_latency_ms`` plus its own 40 ms margin (and 150 ms more while the
server's figure is a guess), counted from the moment it sent the first chunk; that delay is
the time from a chunk of the agent's voice reaching the frame generator to the console playing
it. Each frame is then painted when its 40 ms play, if it has arrived; a late frame leaves the
previous mouth up for up to two frames (the console's rule). Reported: the delay, the share of
frame times that showed their own frame, and the A/V offset of the paints (40 ms per frame a
held mouth is behind; the browser's own paint jitter is not modelled here).
Without ``--url`` it starts ``lipstream serve`` in a child process on free ports; ``--model``
picks the model every session uses, and a short warm-up utterance runs before the rows.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.files import read_audio_file
from lipstream.bench_package import speed_package
from lipstream.bench_serve import ServeProcess
from lipstream.errors import InvalidInput
from lipstream.frames.protocol import parse_binary_frame
from lipstream.model.package import scan_packages

DEFAULT_SPEECH = Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
)
# The console's own additions to the server's pipeline latency (src/lipstream/console/av_sync.js)
CONSOLE_SAFETY_MS = 40.0
CONSOLE_UNLEARNED_MS = 150.0  # while the server's figure is its first guess
CONSOLE_HOLD_FRAMES = 2  # a late frame leaves the previous mouth up this many frame times
FRAME_MS = 1000.0 / tl.FPS
CONFIGURE_TIMEOUT_S = 10.0


@dataclass
class SessionResult:
    frames_expected: int
    frames: list[dict] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # per chunk, monotonic
    errors: list[str] = field(default_factory=list)
    lookahead_ms: float = 0.0  # the model's, resampling included (the server's figure)
    pipeline_latency_ms: float = 0.0  # what the server told before the first chunk
    latency_measured: bool = False

    def listener_delay_ms(self) -> float:
        """How long after sending a chunk the console plays it (see the module's docstring)."""
        unlearned = 0.0 if self.latency_measured else CONSOLE_UNLEARNED_MS
        return self.pipeline_latency_ms + CONSOLE_SAFETY_MS + unlearned

    def paints(self) -> tuple[list[float], int, int]:
        """(A/V offset of each frame time's paint in ms, frame times showing their own frame,
        frame times with no mouth) for a console playing with ``listener_delay_ms``."""
        if not self.sent_at:
            return [], 0, 0
        delay_s = self.listener_delay_ms() / 1000.0
        frames = zip(self.frames, self.received_at, strict=True)
        arrived = {f["frame_index"]: at for f, at in frames}
        offsets, own, none = [], 0, 0
        for k in range(self.frames_expected):
            due = self.sent_at[0] + k * FRAME_MS / 1000.0 + delay_s
            shown = next(
                (
                    j
                    for j in range(k, max(k - CONSOLE_HOLD_FRAMES, 0) - 1, -1)
                    if arrived.get(j, math.inf) <= due
                ),
                None,
            )
            if shown is None:
                none += 1
                continue
            own += shown == k
            offsets.append((k - shown) * FRAME_MS)
        return offsets, own, none

    def client_latencies_ms(self, chunk_samples: int, rate: int) -> list[float]:
        """Frame received minus the moment the chunk completing its audio was (or was due) sent.

        The last frames of an utterance are completed by ``end_of_speech``'s silence, all at
        once; their chunks are taken as due at real-time pace after the last one sent, as a
        client that plays the audio delayed needs them, so the tail's burst is not counted as
        latency the listener would see.
        """
        period = chunk_samples / rate
        out = []
        for frame, got in zip(self.frames, self.received_at, strict=True):
            k = frame["frame_index"]
            # the audio frame k waits for, at most: its start plus the model's lookahead
            needed_input = math.ceil((k * FRAME_MS + self.lookahead_ms) * rate / 1000.0)
            chunk = max(needed_input - 1, 0) // chunk_samples
            last = len(self.sent_at) - 1
            due = self.sent_at[min(chunk, last)] + max(0, chunk - last) * period
            out.append(1000.0 * (got - due))
        return out

    def streamed_frames(self) -> list[dict]:
        """Frames completed by speech while it streamed (not by ``end_of_speech``'s padding)."""
        return [
            f
            for f, got in zip(self.frames, self.received_at, strict=True)
            if got <= self.sent_at[-1]
        ]


async def stream_session(
    url: str, pcm: np.ndarray, rate: int, chunk: int, binary: bool, model: str | None = None
) -> SessionResult:
    from websockets.asyncio.client import connect

    result = SessionResult(frames_expected=math.ceil(len(pcm) * tl.FPS / rate))
    async with connect(url, compression=None, max_size=None) as ws:
        if model:
            await ws.send(json.dumps({"type": "set_model", "model_name": model}))
        configure = {"type": "configure", "push_frames": True, "audio_sample_rate": rate}
        await ws.send(json.dumps({**configure, "binary_frames": binary}))
        await asyncio.wait_for(_configured(ws, result, model), CONFIGURE_TIMEOUT_S)

        async def receive() -> None:
            async for raw in ws:
                if isinstance(raw, bytes):
                    message, _ = parse_binary_frame(raw)
                else:
                    message = json.loads(raw)
                if message["type"] == "current_frame" and not message["idle"]:
                    result.frames.append(message)
                    result.received_at.append(time.monotonic())
                    if len(result.frames) >= result.frames_expected:
                        return
                elif message["type"] == "error":
                    result.errors.append(f"{message['code']}: {message['message']}")

        receiver = asyncio.create_task(receive(), name="bench-receive")
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), chunk)):
            await asyncio.sleep(max(0.0, start + (i + 1) * chunk / rate - time.monotonic()))
            await ws.send(pcm[at : at + chunk].astype("<i2").tobytes())
            result.sent_at.append(time.monotonic())
        await ws.send(json.dumps({"type": "end_of_speech"}))
        try:
            await asyncio.wait_for(receiver, timeout=30)
        except TimeoutError:
            result.errors.append("timed out waiting for the last frames")
    return result


async def _configured(ws, result: SessionResult, model: str | None) -> None:
    """Read replies up to ``configured``; keep the lookahead and pipeline latency told."""
    while True:
        raw = await ws.recv()
        if isinstance(raw, bytes):
            continue  # an idle frame
        message = json.loads(raw)
        if message["type"] == "error":
            raise InvalidInput(f"the frame generator refused: {message['message']}")
        if message["type"] == "configured":
            result.lookahead_ms = message["lookahead_ms"]
            result.pipeline_latency_ms = message["pipeline_latency_ms"]
            result.latency_measured = bool(message.get("latency_measured"))
            return


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def summarize(results: list[SessionResult], rate: int, chunk: int) -> dict:
    """One row of the table: sessions, fps per session, latencies, missing frames."""
    fps, server, client, missing = [], [], [], 0
    offsets, own, slots, delays = [], 0, 0, []
    for r in results:
        paint_offsets, paint_own, _ = r.paints()
        offsets += paint_offsets
        own += paint_own
        slots += r.frames_expected
        delays.append(r.listener_delay_ms())
        missing += r.frames_expected - len(r.frames)
        # frames made while speech streamed: the sustained rate (the tail comes in a burst)
        streaming = [t for t in r.received_at if t <= r.sent_at[-1]]
        if len(streaming) > 1:
            fps.append((len(streaming) - 1) / (streaming[-1] - streaming[0]))
        server += [f["latency_ms"] for f in r.streamed_frames() if not math.isnan(f["latency_ms"])]
        client += r.client_latencies_ms(chunk, rate)
    s50, s95 = _percentiles(server)
    c50, c95 = _percentiles(client)
    return {
        "sessions": len(results),
        "fps_per_session": min(fps) if fps else float("nan"),
        "server_latency_p50_ms": s50,
        "server_latency_p95_ms": s95,
        "client_latency_p50_ms": c50,
        "client_latency_p95_ms": c95,
        "missing_frames": missing,
        "errors": sorted({e for r in results for e in r.errors}),
        "listener_delay_ms": max(delays) if delays else float("nan"),
        "on_time_share": own / slots if slots else float("nan"),
        "av_offset_p95_ms": float(np.percentile(offsets, 95)) if offsets else float("nan"),
    }


async def run_sessions(
    url: str,
    pcm: np.ndarray,
    rate: int,
    sessions: int,
    binary: bool = True,
    model: str | None = None,
) -> dict:
    chunk = rate // tl.FPS
    results = await asyncio.gather(
        *(stream_session(url, pcm, rate, chunk, binary, model) for _ in range(sessions))
    )
    return summarize(list(results), rate, chunk)


def format_table(rows: list[dict]) -> str:
    lines = [
        "| sessions | frames/s per session | latency p50 / p95 (server, while streaming) | "
        "latency p50 / p95 (client, vs real time) | missing frames | listener delay | "
        "frames on time | A/V offset p95 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['sessions']} | {r['fps_per_session']:.1f} | "
            f"{r['server_latency_p50_ms']:.0f} / {r['server_latency_p95_ms']:.0f} ms | "
            f"{r['client_latency_p50_ms']:.0f} / {r['client_latency_p95_ms']:.0f} ms | "
            f"{r['missing_frames']} | {r['listener_delay_ms']:.0f} ms | "
            f"{100 * r['on_time_share']:.1f}% | {r['av_offset_p95_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def run_e2e(
    speech: Path,
    sessions: list[int],
    url: str | None,
    models_dir: Path,
    rate: int,
    binary: bool = True,
    model: str | None = None,
    warmup_s: float = 3.0,
) -> list[dict]:
    if not speech.is_file():
        raise InvalidInput(f"speech file {speech} not found (pocketsphinx-testdata ships one)")
    pcm = read_audio_file(speech, rate).samples
    server = None if url else ServeProcess(models_dir)
    try:
        target = url or server.websocket_url  # type: ignore[union-attr]
        if warmup_s > 0:  # a warm server: its first frames are not the ones measured
            asyncio.run(run_sessions(target, pcm[: int(warmup_s * rate)], rate, 1, binary, model))
        rows = []
        for n in sessions:
            row = asyncio.run(run_sessions(target, pcm, rate, n, binary, model))
            rows.append(row)
            print(format_table([row]).splitlines()[-1], flush=True)
            for error in row["errors"]:
                print(f"  error seen: {error}", flush=True)
        return rows
    finally:
        if server:
            server.stop()


def register_e2e(sub) -> None:
    """Add ``bench e2e`` to the ``bench`` command's subcommands."""
    p = sub.add_parser("e2e", help="stream real speech through the running system, N sessions")
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="speech file to stream")
    p.add_argument(
        "--sessions", default="1,2,4", help="concurrent session counts, e.g. 1,2,4 (default)"
    )
    p.add_argument("--url", help="frame generator of a running system (default: start one)")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="with no --url")
    p.add_argument("--rate", type=int, default=24000, help="sample rate to stream at")
    p.add_argument("--model", help="the model every session uses (default: the first)")
    p.add_argument(
        "--warmup-s",
        type=float,
        default=3.0,
        help="seconds of speech streamed once before the rows (default 3; 0: none)",
    )
    p.add_argument(
        "--json-frames",
        action="store_true",
        help="take frames as base64 JSON (the guide's default) instead of binary messages",
    )
    p.add_argument(
        "--width",
        type=float,
        help="serve a speed-only package: the first package's avatar with a random generator "
        "of this width (1.0: the full SyncTalk_2D network), exported like a trained one",
    )
    p.set_defaults(func=_run)


def _run(args) -> int:
    try:
        sessions = [int(n) for n in args.sessions.split(",") if n.strip()]
    except ValueError:
        raise InvalidInput(f"--sessions takes counts like 1,2,4, got {args.sessions!r}") from None
    if not sessions or min(sessions) < 1:
        raise InvalidInput("--sessions needs counts of at least 1")
    with tempfile.TemporaryDirectory(prefix="lipstream-bench-") as tmp:
        models_dir = args.models_dir
        if args.width is not None:
            if args.url:
                raise InvalidInput("--width serves its own package: leave out --url")
            source = scan_packages(models_dir)
            if not source:
                raise InvalidInput(f"no model package in {models_dir} to take the avatar from")
            models_dir = Path(tmp)
            folder = speed_package(source[0], args.width, models_dir)
            print(f"speed-only package {folder.name}: random weights, width {args.width:g}")
        print(format_table([]).splitlines()[0], flush=True)
        print(format_table([]).splitlines()[1], flush=True)
        run_e2e(
            args.speech,
            sessions,
            args.url,
            models_dir,
            args.rate,
            not args.json_frames,
            args.model,
            args.warmup_s,
        )
    return 0
