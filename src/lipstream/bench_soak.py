"""``lipstream bench soak``: hours of speech through the three services, watching their memory.

The lip-sync service, the frame generator and the web server run as three processes (as in a
deployment), on free loopback ports. ``--sessions`` clients stream a speech file at real-time
pace, one utterance per connection, reconnecting after each, so that connections, streams and
utterances come and go the whole time; the web server's API is asked between utterances. Every
``--every`` seconds the resident memory (VmRSS) and open file descriptors of each service are
sampled. The result: frames delivered against expected, errors, and each service's RSS growth
from the end of the warm-up to the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lipstream.audio import timeline as tl
from lipstream.audio.files import read_audio_file
from lipstream.bench_e2e import DEFAULT_SPEECH, stream_session
from lipstream.bench_serve import free_port, start_service, stop_process
from lipstream.errors import InvalidInput, LipstreamError

SERVICES = ("grpc", "frames", "web")


def process_memory(pid: int) -> tuple[float, int]:
    """(resident memory in MiB, open file descriptors) of a process, from /proc."""
    rss_kib = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return rss_kib / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class SoakResult:
    samples: list[dict] = field(default_factory=list)  # t_s, and rss_mib/fds per service
    utterances: int = 0
    frames_expected: int = 0
    frames_delivered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    api_calls: int = 0

    def growth(self, service: str, warmup_s: float) -> float:
        """RSS growth (fraction) from the first sample after the warm-up to the mean of the
        last three samples."""
        after = [s for s in self.samples if s["t_s"] >= warmup_s]
        if len(after) < 2:
            return float("nan")
        first = after[0][f"{service}_rss_mib"]
        last = sum(s[f"{service}_rss_mib"] for s in after[-3:]) / len(after[-3:])
        return last / first - 1.0


class Services:
    """The three services as child processes on free loopback ports."""

    def __init__(self, models_dir: Path) -> None:
        ports = {name: free_port() for name in ("grpc", "metrics", "frames", "web")}
        env = dict(
            os.environ,
            HOST="127.0.0.1",
            MODELS_DIR=str(models_dir),
            GRPC_SERVER_PORT=str(ports["grpc"]),
            GRPC_METRICS_PORT=str(ports["metrics"]),
            GRPC_SERVER_ADDRESS=f"127.0.0.1:{ports['grpc']}",
            WEBSOCKET_PORT=str(ports["frames"]),
            PORT=str(ports["web"]),
        )
        self.websocket_url = f"ws://127.0.0.1:{ports['frames']}/"
        self.web_url = f"http://127.0.0.1:{ports['web']}"
        self.processes: dict[str, subprocess.Popen[str]] = {}
        try:
            for name in SERVICES:
                self.processes[name] = start_service(name, env, 180.0)
        except BaseException:
            self.stop()
            raise

    def sample(self, t_s: float) -> dict:
        row: dict = {"t_s": round(t_s, 1)}
        for name, process in self.processes.items():
            rss, fds = process_memory(process.pid)
            row[f"{name}_rss_mib"] = round(rss, 1)
            row[f"{name}_fds"] = fds
        return row

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            stop_process(process)


async def _client(services: Services, pcm, rate: int, deadline: float, result: SoakResult) -> None:
    chunk = rate // tl.FPS  # 40 ms chunks, as bench e2e sends
    while time.monotonic() < deadline:
        try:
            session = await stream_session(services.websocket_url, pcm, rate, chunk, True)
        except (OSError, LipstreamError) as exc:
            key = f"connect: {type(exc).__name__}"
            result.errors[key] = result.errors.get(key, 0) + 1
            await asyncio.sleep(1.0)
            continue
        result.utterances += 1
        result.frames_expected += session.frames_expected
        result.frames_delivered += len(session.frames)
        for error in session.errors:
            code = error.split(":", 1)[0]  # by code: messages carry changing numbers
            result.errors[code] = result.errors.get(code, 0) + 1
        for path in ("/api/config", "/api/models", "/healthz"):
            await asyncio.to_thread(_get, services.web_url + path)
            result.api_calls += 1


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as answer:
        answer.read()


async def _sampler(
    services: Services, start: float, deadline: float, every_s: float, result: SoakResult, log
) -> None:
    while True:
        row = services.sample(time.monotonic() - start)
        result.samples.append(row)
        log(
            f"{row['t_s']:>7.0f} s  "
            + "  ".join(
                f"{n} {row[f'{n}_rss_mib']:.0f} MiB/{row[f'{n}_fds']} fds" for n in SERVICES
            )
            + f"  frames {result.frames_delivered}/{result.frames_expected}"
        )
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(min(every_s, max(deadline - time.monotonic(), 0.0)))


async def soak(
    services: Services, pcm, rate: int, minutes: float, sessions: int, every_s: float, log=print
) -> SoakResult:
    result = SoakResult()
    start = time.monotonic()
    deadline = start + 60.0 * minutes
    clients = [
        asyncio.create_task(_client(services, pcm, rate, deadline, result)) for _ in range(sessions)
    ]
    await _sampler(services, start, deadline, every_s, result, log)
    await asyncio.gather(*clients)
    result.samples.append(services.sample(time.monotonic() - start))
    return result


def register_soak(sub) -> None:
    """Add ``bench soak`` to the ``bench`` command's subcommands."""
    p = sub.add_parser("soak", help="stream speech through the three services for minutes")
    p.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    p.add_argument("--sessions", type=int, default=2, help="concurrent clients (default 2)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=120.0, help="seconds before growth counts")
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="speech file to stream")
    p.add_argument("--rate", type=int, default=24000, help="sample rate to stream at")
    p.add_argument("--json", type=Path, help="also write the samples and totals here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.minutes <= 0 or args.sessions < 1 or args.every <= 0:
        raise InvalidInput("--minutes and --every must be positive, --sessions at least 1")
    if not args.speech.is_file():
        raise InvalidInput(f"speech file {args.speech} not found (pocketsphinx-testdata ships one)")
    pcm = read_audio_file(args.speech, args.rate).samples
    services = Services(args.models_dir)
    try:
        result = asyncio.run(
            soak(services, pcm, args.rate, args.minutes, args.sessions, args.every)
        )
    finally:
        services.stop()
    print()
    print(
        f"{args.sessions} sessions, {args.minutes:g} min: {result.utterances} utterances, "
        f"frames {result.frames_delivered}/{result.frames_expected}, "
        f"{result.api_calls} API calls"
    )
    for name in SERVICES:
        first, last = result.samples[0], result.samples[-1]
        print(
            f"  {name:>6}: RSS {first[f'{name}_rss_mib']:.0f} -> {last[f'{name}_rss_mib']:.0f} "
            f"MiB, growth after {args.warmup:.0f} s warm-up "
            f"{100 * result.growth(name, args.warmup):+.1f}%, "
            f"fds {first[f'{name}_fds']} -> {last[f'{name}_fds']}"
        )
    print(f"  errors: {result.errors or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(result.__dict__, indent=1))
    return 0
