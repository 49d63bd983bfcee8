"""``lipstream bench model``: how fast each runtime makes mouths on this machine.

A measurement is a whole ``generate`` call (frame ids and audio feature windows in, 320x320 uint8
BGR mouths out), at batch 1 and at the serving batch size, for every runtime x generator width,
plus the JPEG encode of one 320x320 mouth. Without a package the networks have random weights:
speed does not depend on the weights, but int8 fidelity does, so no quality figure is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lipstream.audio.timeline import FRAME_FEATURE_SHAPE
from lipstream.bench_compose import register_compose
from lipstream.bench_e2e import register_e2e
from lipstream.bench_runtimes import RUNTIMES, SyncTalk2dLoop, build_runtimes
from lipstream.bench_soak import register_soak
from lipstream.bench_sync import register_sync
from lipstream.bench_webrtc import register_webrtc
from lipstream.errors import InvalidInput, PackageError

DEFAULT_WIDTHS = (1.0, 0.5, 0.25)
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Timing:
    """Per-frame time of one runtime at one batch size; ``best`` and ``median`` over calls."""

    runtime: str
    width: float
    batch: int
    median_ms: float
    best_ms: float
    calls: int

    @property
    def fps(self) -> float:
        """Frames per second at the median time."""
        return 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")


def machine_description() -> dict[str, str]:
    """CPU model, core count, load and library versions, for the top of a benchmark report."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    with contextlib.suppress(OSError):
        info["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        import onnxruntime as ort

        info["onnxruntime"] = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        info["onnxruntime"] = "not installed"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        info["torch"] = f"{torch.__version__} ({gpu}, {torch.get_num_threads()} threads)"
    except ImportError:
        info["torch"] = "not installed"
    return info


def time_calls(fn: Callable[[], Any], seconds: float, min_calls: int = 3) -> list[float]:
    """Seconds per call of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_runtime(runtime: Any, batch: int, seconds: float, frame_count: int) -> Timing:
    """Time ``runtime.generate`` on ``batch`` consecutive frames with random audio windows."""
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((batch, *FRAME_FEATURE_SHAPE), dtype=np.float32)
    state = {"start": 0}

    def call() -> None:
        # walk through the avatar like playback does, so crops are not always hot in cache
        start = state["start"]
        ids = [(start + i) % frame_count for i in range(batch)]
        state["start"] = (start + batch) % frame_count
        runtime.generate(ids, audio)

    times = time_calls(call, seconds)
    per_frame = [1000.0 * t / batch for t in times]
    return Timing(
        runtime=runtime.name,
        width=float(runtime.width),
        batch=batch,
        median_ms=statistics.median(per_frame),
        best_ms=min(per_frame),
        calls=len(times),
    )


def time_jpeg(image: np.ndarray, seconds: float) -> dict[str, float]:
    """Median ms to encode one BGR image as JPEG (quality 85) with simplejpeg and OpenCV."""
    import cv2
    import simplejpeg

    out = {}
    encoders: dict[str, Callable[[], Any]] = {
        "simplejpeg": lambda: simplejpeg.encode_jpeg(
            image, quality=JPEG_QUALITY, colorspace="BGR", colorsubsampling="420"
        ),
        "opencv": lambda: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]),
    }
    for name, fn in encoders.items():
        out[name] = 1000.0 * statistics.median(time_calls(fn, seconds, min_calls=20))
    return out


def synthetic_crops(count: int, seed: int = 0) -> np.ndarray:
    """Smooth face-like uint8 BGR crops [count,320,320,3] for timing and stand-in calibration."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:320, 0:320].astype(np.float32)
    crops = np.empty((count, 320, 320, 3), np.uint8)
    for i in range(count):
        base = 90 + 60 * np.sin(xx / 53.0 + i * 0.3) * np.cos(yy / 71.0)
        img = np.stack([base * 0.8, base * 0.9, base * 1.1], axis=-1)
        img += rng.normal(0, 6, img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        cv2.ellipse(img, (160, 200 + i % 5), (60, 18 + 3 * (i % 4)), 0, 0, 360, (40, 30, 120), -1)
        crops[i] = img
    return crops


def synthetic_audio(count: int, seed: int = 1) -> np.ndarray:
    """Random stand-in audio feature windows float32 [count,32,16,16]."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, *FRAME_FEATURE_SHAPE), dtype=np.float32)


def bench_generator(
    generator_state: Mapping[str, Any],
    crops320: np.ndarray,
    calibration_audio: np.ndarray,
    runtimes: Sequence[str] = RUNTIMES,
    batch: int = 5,
    seconds: float = 5.0,
    log: Callable[[str], None] | None = None,
) -> list[Timing]:
    """Timings of every requested runtime of one generator at batch 1 and at ``batch``."""
    results: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="lipstream-bench-") as tmp:
        for runtime in build_runtimes(generator_state, crops320, calibration_audio, runtimes, tmp):
            for b in sorted({1, batch}):
                timing = time_runtime(runtime, b, seconds, len(crops320))
                results.append(timing)
                if log:
                    log(format_row(timing))
    return results


def random_generator_state(width: float, seed: int = 0) -> dict[str, Any]:
    """A random-weight generator state_dict of ``width`` whose output depends on its input.

    With PyTorch's default initialisation the deep network's output is nearly constant; a
    BatchNorm gain of about 2 keeps the signal alive through the layers, so tests can tell
    frames apart.
    """
    import torch

    from lipstream.model.network import Generator, GeneratorConfig

    torch.manual_seed(seed)
    net = Generator(GeneratorConfig(width=width))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(1.8, 2.2)
    return net.state_dict()


def bench_model(
    widths: Sequence[float] = DEFAULT_WIDTHS,
    runtimes: Sequence[str] = RUNTIMES,
    batch: int = 5,
    seconds: float = 5.0,
    package: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the whole model benchmark; returns machine, timings and JPEG times."""
    if batch < 1:
        raise InvalidInput(f"batch must be at least 1, got {batch}")
    machine = machine_description()
    if log:
        for key, value in machine.items():
            log(f"{key:>12}: {value}")
        log("")
    timings: list[Timing] = []
    if package is not None:
        crops, package_timings = bench_package(package, runtimes, batch, seconds, log)
        timings += package_timings
    else:
        crops, audio = synthetic_crops(16), synthetic_audio(16)
        if log:
            log("random-weight networks, synthetic crops and audio: speed does not depend on")
            log("the weights; int8 quality does, so judge it on a trained package only.")
            log(header())
        for width in widths:
            state = random_generator_state(width)
            timings += bench_generator(state, crops, audio, runtimes, batch, seconds, log)
    jpeg = time_jpeg(crops[0], min(seconds, 1.0))
    if log:
        log("")
        for name, ms in jpeg.items():
            log(f"JPEG encode 320x320 q{JPEG_QUALITY} {name:>10}: {ms:.3f} ms")
    return {"machine": machine, "timings": timings, "jpeg_ms": jpeg}


def bench_package(
    path: str | Path,
    runtimes: Sequence[str] = RUNTIMES,
    batch: int = 5,
    seconds: float = 5.0,
    log: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list[Timing]]:
    """Timings of the runtimes a package ships (its own exported files), and its crops."""
    from lipstream.model.package import load_package

    pkg = load_package(path)
    crops = pkg.load_inner_crops()
    built: list[Any] = []
    for kind in runtimes:
        try:
            built.append(_package_runtime(pkg, kind, crops))
        except (PackageError, InvalidInput) as exc:
            if log:
                log(f"{kind} skipped: {exc}")
    if log:
        log(f"package {pkg.name}: the weights and crops it ships")
        log(header())
    results: list[Timing] = []
    for runtime in built:
        for b in sorted({1, batch}):
            timing = time_runtime(runtime, b, seconds, pkg.frame_count)
            results.append(timing)
            if log:
                log(format_row(timing))
    return crops, results


def header() -> str:
    """The table header matching :func:`format_row`."""
    return (
        f"{'runtime':<16} {'width':>5} {'batch':>5} {'ms/frame':>9} {'best':>7} "
        f"{'frames/s':>9} {'calls':>6}"
    )


def _package_runtime(pkg: Any, kind: str, crops: np.ndarray) -> Any:
    """Runtime ``kind`` on a package's own weights (PackageError when it ships none for it)."""
    from lipstream.model.engine import open_model

    if kind != "synctalk2d-eager":
        return open_model(pkg, kind).generator
    path = pkg.weights("pytorch.generator")
    if path is None:
        raise PackageError(f"package {pkg.name} ships no PyTorch generator for the eager loop")
    from lipstream.model.synctalk2d import load_generator

    return SyncTalk2dLoop(load_generator(path), crops)


def format_row(t: Timing) -> str:
    """One table row."""
    return (
        f"{t.runtime:<16} {t.width:>5g} {t.batch:>5d} {t.median_ms:>9.2f} {t.best_ms:>7.2f} "
        f"{t.fps:>9.1f} {t.calls:>6d}"
    )


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in RUNTIMES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {bad}; choose from {list(RUNTIMES)}")
    return names


def _default_batch() -> int:
    value = os.environ.get("INFERENCE_BATCH_SIZE", "5")
    try:
        return max(1, int(value))
    except ValueError:
        return 5


def _run_model(args: argparse.Namespace) -> int:
    bench_model(
        widths=args.widths,
        runtimes=args.runtimes,
        batch=args.batch,
        seconds=args.seconds,
        package=args.package,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``bench`` with its ``model`` subcommand to the ``lipstream`` command."""
    bench = subparsers.add_parser("bench", help="measure speed on this machine")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    model = sub.add_parser("model", help="time every runtime x width of the generator")
    model.add_argument(
        "--package", type=Path, help="model package to use (default: random weights)"
    )
    model.add_argument(
        "--widths", type=_floats, default=list(DEFAULT_WIDTHS), help="generator widths, e.g. 1,0.25"
    )
    model.add_argument(
        "--runtimes",
        type=_names,
        default=list(RUNTIMES),
        help=f"comma-separated, from {','.join(RUNTIMES)}",
    )
    model.add_argument(
        "--batch",
        type=int,
        default=_default_batch(),
        help="serving batch size (default: INFERENCE_BATCH_SIZE or 5)",
    )
    model.add_argument("--seconds", type=float, default=5.0, help="timing per measurement")
    model.set_defaults(func=_run_model)
    register_e2e(sub)
    register_sync(sub)
    register_soak(sub)
    register_compose(sub)
    register_webrtc(sub)
