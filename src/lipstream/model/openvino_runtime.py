"""The OpenVINO runtimes: the package's own ONNX generator on oneDNN's CPU kernels (AMX, VNNI).

ONNX Runtime's int8 convolutions use VNNI; OpenVINO runs the same QDQ graph on oneDNN's AMX
kernels where the CPU has them, and the float graph in bfloat16 where the CPU computes it
natively (AMX or AVX512-BF16). Two runtimes come from this module, each with the package's
audio encoder under OpenVINO too (``OpenVinoAudioEncoder``):

- ``openvino-int8``: the package's ``generator_int8.onnx``;
- ``openvino-bf16``: the package's ``generator_fp32.onnx`` with bfloat16 inference, only where
  the CPU reports BF16 (``bf16_native()``).

The graph is compiled for one frame (a static shape compiles once and runs fastest). A request of
one frame runs on all cores; a request of several frames runs as one frame per stream, each stream
on its own core (the ``THROUGHPUT`` hint), which for this network beats splitting each operator
over the cores. Both compiled models are warmed up at construction, because OpenVINO's first call
is 1.5-2.5x slower than the rest. Compiled models are cached on disk (``cache_dir()``), which
takes a second or two off every later load of the same graph.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lipstream.audio.timeline import FEATURE_SIZE, FRAME_FEATURE_SHAPE
from lipstream.errors import InvalidInput
from lipstream.geometry import NETWORK_SIZE
from lipstream.model.runtime import (
    MEL_WINDOW_SHAPE,
    check_crops,
    check_generate_inputs,
    check_mel,
    check_request,
)

PRECISIONS = ("int8", "bf16")


def openvino_available() -> bool:
    """Whether the openvino package can be imported here."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """Where compiled models are kept between runs: ``$XDG_CACHE_HOME/lipstream/openvino``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lipstream" / "openvino"


def _core() -> Any:
    import openvino as ov

    core = ov.Core()
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile every time, as without a cache
        return core
    core.set_property({"CACHE_DIR": str(folder)})
    return core


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO says the CPU computes natively, e.g. ("BF16", "FP32", "INT8", ...)."""
    if not openvino_available():
        return ()
    return tuple(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16), per OpenVINO."""
    return "BF16" in cpu_capabilities()


class OpenVinoGenerator:
    """Serves a whole-generate ONNX graph with OpenVINO on the CPU; no PyTorch needed.

    ``precision`` is "int8" for the package's QDQ int8 graph, "bf16" to run its fp32 graph in
    bfloat16. ``threads`` defaults to the core count and is also the number of streams.
    """

    def __init__(
        self,
        model_path: str | Path,
        crops320: np.ndarray,
        precision: str = "int8",
        *,
        threads: int | None = None,
    ) -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise InvalidInput(f"OpenVINO precision must be one of {PRECISIONS}, got {precision!r}")
        self._crops = check_crops(crops320)
        core = _core()
        model = core.read_model(str(model_path))
        check_generate_inputs({port.get_any_name() for port in model.inputs}, model_path)
        model.reshape(
            {
                "crops": [1, NETWORK_SIZE, NETWORK_SIZE, 3],
                "audio": [1, *FRAME_FEATURE_SHAPE],
            }
        )
        self.width = float(_meta(model, "lipstream.width", "nan"))
        threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        # not pinned to cores: the server shares them with its other work (and often a browser),
        # and a pinned stream waits whenever anything else runs on its core
        common: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": False}
        if precision == "bf16":
            common["INFERENCE_PRECISION_HINT"] = "bf16"
        # int8: int8 where the graph quantizes, and OpenVINO's default (bf16 where the CPU has
        # it natively) for the rest
        self._latency = core.compile_model(
            model, "CPU", {**common, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        )
        self._request = self._latency.create_infer_request()
        self.streams = threads
        self._queue: Any = None
        if threads > 1:
            throughput = core.compile_model(
                model, "CPU", {**common, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads}
            )
            self._queue = ov.AsyncInferQueue(throughput, threads)
            self._queue.set_callback(self._collect)
        self._out: np.ndarray | None = None
        self._lock = threading.Lock()  # one generate at a time: the queue's slots are shared
        self.device = "cpu"
        self.name = f"openvino-{precision}"
        self.precision = precision
        self._warm_up()

    @property
    def frame_count(self) -> int:
        """How many avatar frames (crops) this runtime can draw from."""
        return len(self._crops)

    def _warm_up(self) -> None:
        ids = list(range(min(self.streams, len(self._crops))))
        audio = np.zeros((len(ids), *FRAME_FEATURE_SHAPE), np.float32)
        for _ in range(2):
            self.generate(ids[:1], audio[:1])
            if len(ids) > 1:
                self.generate(ids, audio)

    def _collect(self, request: Any, index: int) -> None:
        assert self._out is not None
        self._out[index] = request.get_output_tensor(0).data[0]

    def generate(self, frame_ids: Sequence[int], audio_windows: np.ndarray) -> np.ndarray:
        """uint8 BGR mouths [N,320,320,3] for ``frame_ids`` and float32 audio [N,32,16,16]."""
        ids, audio = check_request(frame_ids, audio_windows, len(self._crops))
        out = np.empty((len(ids), NETWORK_SIZE, NETWORK_SIZE, 3), np.uint8)
        if not len(ids):
            return out
        with self._lock:
            if len(ids) == 1 or self._queue is None:
                for i, frame_id in enumerate(ids):
                    self._request.infer(
                        {"crops": self._crops[frame_id : frame_id + 1], "audio": audio[i : i + 1]}
                    )
                    out[i] = self._request.get_output_tensor(0).data[0]
                return out
            self._out = out
            try:
                for i, frame_id in enumerate(ids):
                    self._queue.start_async(
                        {"crops": self._crops[frame_id : frame_id + 1], "audio": audio[i : i + 1]},
                        i,
                    )
                self._queue.wait_all()
            finally:
                self._out = None
        return out

    def close(self) -> None:
        """Nothing to stop: OpenVINO's threads end with the compiled models."""


def _meta(model: Any, key: str, default: str) -> str:
    """An ONNX metadata_props value, which OpenVINO keeps under the model's "framework" info."""
    path = ["framework", key]
    return str(model.get_rt_info(path).astype(str)) if model.has_rt_info(path) else default


class OpenVinoAudioEncoder:
    """The exported audio encoder under OpenVINO: ``encode(mel [N,1,80,16]) -> [N,512]``.

    It runs in bfloat16 where the CPU computes it natively (features within 0.4% of fp32, and
    3.5x faster than ONNX Runtime's fp32 on AMX), else in fp32 (2x faster on two cores).
    """

    def __init__(self, model_path: str | Path, *, threads: int | None = None) -> None:
        core = _core()
        model = core.read_model(str(model_path))
        model.reshape({model.inputs[0].get_any_name(): [-1, *MEL_WINDOW_SHAPE]})
        self.precision = "bf16" if bf16_native() else "f32"
        threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": self.precision,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": threads,
                "ENABLE_CPU_PINNING": False,
            },
        )
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()
        self.name = f"openvino-audio-encoder-{self.precision}"
        self.encode(np.zeros((1, *MEL_WINDOW_SHAPE), np.float32))  # the first call compiles

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """float32 features [N,512] for float32 mel windows [N,1,80,16]."""
        windows = check_mel(windows)
        if not len(windows):
            return np.zeros((0, FEATURE_SIZE), np.float32)
        with self._lock:
            return self._request.infer([windows])[0].copy()

    __call__ = encode
