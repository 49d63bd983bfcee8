"""``lipstream bench webrtc``: what one WebRTC call costs the server per frame, besides the
lip-sync model.

Per 40 ms frame a call composites the mouth (from its JPEG, feathered) into the avatar's frame,
encodes the frame (VP8 or H.264, with aiortc's own encoders at their default bitrate) and encodes
its 40 ms of voice as two 20 ms Opus packets. This times that chain on the package's frames, in
CPU time of the whole process (an encoder's own threads count), so that ``40 / CPU ms`` is the
number of calls one core keeps at 25 fps. The lip-sync inference is shared by all sessions and
measured by ``bench model`` and ``bench e2e``.
"""

from __future__ import annotations

import itertools
import statistics
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from lipstream.audio.pcm import av_frame
from lipstream.compositor import Compositor, FrameCache
from lipstream.errors import InvalidInput
from lipstream.model.package import load_package

CODECS = {"vp8": "video/VP8", "h264": "video/H264"}
FRAME_MS = 40.0


def bench_webrtc(package_dir: Path, codecs: list[str], seconds: float) -> list[dict]:
    cv2.setNumThreads(1)
    package = load_package(package_dir)
    compositor = Compositor(package, cache=FrameCache(), order="RGB")  # as a call makes them
    noise = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    mouth = np.asarray(cv2.GaussianBlur(noise, (0, 0), 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", mouth, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    voice = (np.sin(np.arange(960) * 2 * np.pi * 220 / 24000) * 8000).astype(np.int16)
    rows = []
    for codec in codecs:
        video = get_encoder(RTCRtpCodecParameters(mimeType=CODECS[codec], clockRate=90000))
        opus = get_encoder(
            RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2)
        )
        frame_ids = itertools.cycle(range(package.frame_count))
        wall: list[float] = []
        count, cpu_started, k = 0, 0.0, 0
        deadline = None
        while deadline is None or time.perf_counter() < deadline or count < 25:
            if k == 25:  # after a second of warm-up (the encoder's first keyframes)
                deadline = time.perf_counter() + seconds
                cpu_started = time.process_time()
            started = time.perf_counter()
            fid = next(frame_ids)
            image = compositor.compose(fid, jpeg, package.bounds[fid])
            picture = av.VideoFrame.from_ndarray(image, format="rgb24")
            picture.pts, picture.time_base = k * 3600, Fraction(1, 90000)
            video.encode(picture)
            for half in range(2):
                opus.encode(
                    av_frame(voice[half * 480 : (half + 1) * 480], 24000, k * 960 + half * 480)
                )
            if deadline is not None:
                wall.append(1000 * (time.perf_counter() - started))
                count += 1
            k += 1
        cpu_ms = 1000 * (time.process_time() - cpu_started) / count
        rows.append(
            {
                "codec": codec,
                "size": f"{compositor.width}x{compositor.height}",
                "p50_ms": statistics.median(wall),
                "cpu_ms": cpu_ms,
                "calls_per_core": FRAME_MS / cpu_ms,
            }
        )
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [
        "| video codec | frame | wall ms/frame p50 | CPU ms/frame | calls per core at 25 fps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['codec']} | {r['size']} | {r['p50_ms']:.2f} | {r['cpu_ms']:.2f} | "
            f"{r['calls_per_core']:.1f} |"
        )
    return "\n".join(lines)


def _run(args) -> int:
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if not codecs or any(c not in CODECS for c in codecs):
        raise InvalidInput(f"--codecs takes {','.join(CODECS)}, got {args.codecs!r}")
    print(format_rows([]), flush=True)
    bench_webrtc(args.package, codecs, args.seconds)
    return 0


def register_webrtc(sub) -> None:
    p = sub.add_parser(
        "webrtc", help="time a WebRTC call's compositing and encoding per frame (CPU)"
    )
    p.add_argument("--package", type=Path, default=Path("models/demo"), help="model package")
    p.add_argument("--codecs", default=",".join(CODECS), help="from vp8,h264 (both)")
    p.add_argument("--seconds", type=float, default=5.0, help="timing per codec")
    p.set_defaults(func=_run)
