"""``lipstream bench compose``: what compositing a full avatar frame on the server costs.

For each frame size it times ``Compositor.compose`` on the package's frames with a generated
mouth: from its JPEG (as mouths arrive from the lip-sync service) with the feathered blend,
from the decoded array with the blend, and hard-edged. ``native`` is the package's own video;
``1080p`` is the video scaled to 1080 rows and centred on a 1920x1080 frame, with the mouth's
box scaled alike. One thread: frames/s per core is 1000 / ms.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from lipstream.compositor import AvatarFrames, Compositor, FrameCache
from lipstream.errors import InvalidInput
from lipstream.model.package import ModelPackage, load_package

SIZES = ("native", "1080p")


def _video_1080p(package: ModelPackage) -> tuple[AvatarFrames, float, int]:
    """The package's frames scaled to 1080 rows on a 1920x1080 canvas; (frames, scale, x pad)."""
    scale = 1080 / package.video_height
    scaled = FrameCache().get(package, scale).frames
    width = scaled.shape[2]
    if width > 1920:
        raise InvalidInput(f"{package.name}'s video is wider than 16:9; 1080p would crop it")
    pad = (1920 - width) // 2
    frames = np.zeros((len(scaled), 1080, 1920, 3), dtype=np.uint8)
    frames[:, :, pad : pad + width] = scaled
    frames.flags.writeable = False
    return AvatarFrames(frames, scale), scale, pad


def _cases(
    package: ModelPackage, size: str, mouth: np.ndarray, jpeg: bytes
) -> tuple[Compositor, float, dict[str, Callable[[], object]]]:
    """(blending compositor, scale, the timed calls by name) for one frame size; each call
    composites the next of the package's frames."""
    if size == "native":
        video, scale, offset = FrameCache().get(package), 1.0, 0.0
    else:
        video, scale, pad = _video_1080p(package)
        offset = pad / scale
    blend = Compositor(package, video=video)
    fast = Compositor(package, video=video, blend=False)
    boxes = package.bounds + np.array([offset, 0.0, offset, 0.0])  # on the padded frame

    def cycling(compositor: Compositor, picture: np.ndarray | bytes) -> Callable[[], object]:
        frame_ids = itertools.cycle(range(package.frame_count))

        def call() -> object:
            k = next(frame_ids)
            return compositor.compose(k, picture, boxes[k])

        return call

    return (
        blend,
        scale,
        {
            "blend, JPEG mouth": cycling(blend, jpeg),
            "blend, decoded mouth": cycling(blend, mouth),
            "hard edges, decoded mouth": cycling(fast, mouth),
        },
    )


def bench_compose(package_dir: Path, sizes: list[str], seconds: float) -> list[dict]:
    from lipstream.bench import time_calls  # bench registers this command: imported late

    cv2.setNumThreads(1)
    package = load_package(package_dir)
    noise = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    mouth = np.asarray(cv2.GaussianBlur(noise, (0, 0), 3), dtype=np.uint8)  # photo-like
    jpeg = cv2.imencode(".jpg", mouth, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    rows = []
    for size in sizes:
        blend, scale, cases = _cases(package, size, mouth, jpeg)
        box = round(float(package.bounds[0][2] - package.bounds[0][0]) * scale)
        for name, call in cases.items():
            times = [1000.0 * t for t in time_calls(call, seconds, min_calls=20)]
            rows.append(
                {
                    "size": f"{blend.width}x{blend.height}",
                    "case": name,
                    "box": box,
                    "p50_ms": statistics.median(times),
                    "best_ms": min(times),
                }
            )
            print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = [
        "| frame | mouth box | case | ms/frame p50 | best | frames/s per core |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['box']} px | {r['case']} | {r['p50_ms']:.2f} | "
            f"{r['best_ms']:.2f} | {1000 / r['p50_ms']:.0f} |"
        )
    return "\n".join(lines)


def _run(args) -> int:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if not sizes or any(s not in SIZES for s in sizes):
        raise InvalidInput(f"--sizes takes {','.join(SIZES)}, got {args.sizes!r}")
    print(format_rows([]), flush=True)
    bench_compose(args.package, sizes, args.seconds)
    return 0


def register_compose(sub) -> None:
    p = sub.add_parser("compose", help="time the server-side compositor per frame")
    p.add_argument("--package", type=Path, default=Path("models/demo"), help="model package")
    p.add_argument("--sizes", default=",".join(SIZES), help="from native,1080p (both)")
    p.add_argument("--seconds", type=float, default=3.0, help="timing per case")
    p.set_defaults(func=_run)
