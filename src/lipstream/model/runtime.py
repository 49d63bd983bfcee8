"""The runtimes: ways to run the networks ("onnx-int8", "onnx-fp32", "torch"), as classes.

A runtime is a choice of engine and weights (``lipstream.model.engine.RUNTIME_CHOICES``); here
are the classes that run it. A ``MouthGenerator`` takes audio features and avatar frame ids and
gives 320x320 BGR mouth regions; an ``AudioFeatureEncoder`` turns mel windows into the features.
Each is built from weights (and a generator from the avatar's inner 320x320 BGR crops), so it
knows nothing of packages. ``OnnxGenerator`` serves exported graphs with ONNX Runtime (CPU, or
CUDA where present) and needs no PyTorch; ``TorchGenerator`` runs the PyTorch generator and
imports torch only when constructed. Every generator reproduces SyncTalk_2D's inference
conventions: input = [crop, crop with the mask rectangle zeroed] scaled by 1/255, output =
sigmoid * 255 truncated to uint8.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lipstream.audio.mel import N_MELS
from lipstream.audio.timeline import FEATURE_SIZE, FRAME_FEATURE_SHAPE, MEL_WINDOW_FRAMES
from lipstream.errors import InvalidInput
from lipstream.geometry import MASK
from lipstream.geometry import NETWORK_SIZE as IMAGE_SIZE

MEL_WINDOW_SHAPE = (1, N_MELS, MEL_WINDOW_FRAMES)


@runtime_checkable
class MouthGenerator(Protocol):
    """Makes mouth regions for avatar frames from audio feature windows."""

    name: str
    width: float

    def generate(self, frame_ids: Sequence[int], audio_windows: np.ndarray) -> np.ndarray:
        """uint8 BGR mouths [N,320,320,3] for ``frame_ids`` and float32 audio [N,32,16,16]."""
        ...


@runtime_checkable
class AudioFeatureEncoder(Protocol):
    """Maps mel windows [N,1,80,16] to features [N,512]; callable as ``encoder(windows)``."""

    name: str

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """float32 features [N,512] for float32 mel windows [N,1,80,16]."""
        ...

    def __call__(self, windows: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------
# validation shared by the runtimes


def check_generate_inputs(names: set[str], model_path: str | Path) -> None:
    """Refuse a graph that is not a whole-generate graph (inputs ``crops`` and ``audio``)."""
    if names != {"crops", "audio"}:
        raise InvalidInput(
            f"{model_path} is not a whole-generate graph (inputs {sorted(names)}, "
            "expected crops and audio)"
        )


def check_crops(crops320: Any) -> np.ndarray:
    """The avatar crops as a C-contiguous uint8 [F,320,320,3] array, or InvalidInput."""
    if not isinstance(crops320, np.ndarray):
        raise InvalidInput(f"crops must be a numpy array, got {type(crops320).__name__}")
    if crops320.dtype != np.uint8:
        raise InvalidInput(f"crops must be uint8 BGR images, got dtype {crops320.dtype}")
    if crops320.ndim != 4 or crops320.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise InvalidInput(f"crops must have shape [F,320,320,3], got {list(crops320.shape)}")
    if len(crops320) == 0:
        raise InvalidInput("crops must hold at least one frame")
    return np.ascontiguousarray(crops320)


def check_request(
    frame_ids: Sequence[int], audio_windows: Any, frame_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (frame ids as int64 [N], audio float32 [N,32,16,16]) for a generate call."""
    if not isinstance(audio_windows, np.ndarray):
        raise InvalidInput(
            f"audio windows must be a numpy array, got {type(audio_windows).__name__}"
        )
    if audio_windows.dtype != np.float32:
        raise InvalidInput(f"audio windows must be float32, got dtype {audio_windows.dtype}")
    if audio_windows.ndim != 4 or audio_windows.shape[1:] != FRAME_FEATURE_SHAPE:
        raise InvalidInput(
            f"audio windows must have shape [N,32,16,16], got {list(audio_windows.shape)}"
        )
    ids = np.asarray(frame_ids)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise InvalidInput("frame ids must be a flat sequence of integers")
    ids = ids.astype(np.int64, copy=False)
    if len(ids) != len(audio_windows):
        raise InvalidInput(
            f"got {len(ids)} frame ids but {len(audio_windows)} audio windows; "
            "one window is needed per frame"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= frame_count):
        bad = int(ids[(ids < 0) | (ids >= frame_count)][0])
        raise InvalidInput(f"frame id {bad} is out of range: the avatar has {frame_count} frames")
    if not np.isfinite(audio_windows).all():
        raise InvalidInput("audio windows hold NaN or infinite values")
    return ids, np.ascontiguousarray(audio_windows)


def check_mel(windows: Any) -> np.ndarray:
    """Validated float32 mel windows [N,1,80,16]."""
    if not isinstance(windows, np.ndarray) or windows.dtype != np.float32:
        raise InvalidInput("mel windows must be a float32 numpy array [N,1,80,16]")
    if windows.ndim != 4 or windows.shape[1:] != MEL_WINDOW_SHAPE:
        raise InvalidInput(f"mel windows must have shape [N,1,80,16], got {list(windows.shape)}")
    return np.ascontiguousarray(windows)


def _empty_mouths() -> np.ndarray:
    return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


# --------------------------------------------------------------------------------------------
# ONNX Runtime


def onnx_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """Execution providers to use: 'auto' takes CUDA when this onnxruntime build has it."""
    import onnxruntime as ort

    if providers == "auto":
        available = ort.get_available_providers()
        chosen = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in available:
            chosen.insert(0, "CUDAExecutionProvider")
        return chosen
    if providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return list(providers)


def session_options(threads: int | None = None, spinning: bool = True):
    """ONNX Runtime session options measured fastest for the generator on CPU.

    ``threads`` defaults to the core count. ``spinning`` lets worker threads busy-wait between
    operators: 10-20% faster calls on two cores, at the price of some CPU burnt while waiting.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    so.intra_op_num_threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return so


class OnnxGenerator:
    """Serves a whole-generate ONNX graph (fp32 or int8) with ONNX Runtime; no PyTorch needed.

    On CPU, frames run one per ``session.run`` (batches are slower per frame there), and a
    request of several frames is spread over ``workers`` single-threaded sessions running side
    by side, one per core: for this network that beats splitting each operator over the cores
    (10-25% more frames per second on two cores), because most of its operators are too small
    to parallelise well. A frame left over runs on a session that uses every core, as does a
    request of one frame. ``workers=1`` turns this off. On CUDA a request is one batched run.
    """

    def __init__(
        self,
        model_path: str | Path,
        crops320: np.ndarray,
        providers: str | Sequence[str] = "auto",
        *,
        threads: int | None = None,
        spinning: bool = True,
        workers: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self._crops = check_crops(crops320)
        self.providers = onnx_providers(providers)
        if workers is None:
            cpu_only = self.providers == ["CPUExecutionProvider"]
            workers = min(os.cpu_count() or 1, threads or os.cpu_count() or 1) if cpu_only else 1
        # Spinning threads of the all-core session would steal the cores the workers run on.
        spinning = spinning and workers < 2
        self._session = ort.InferenceSession(
            str(model_path), session_options(threads, spinning), providers=self.providers
        )
        check_generate_inputs({i.name for i in self._session.get_inputs()}, model_path)
        meta = self._session.get_modelmeta().custom_metadata_map
        self.width = float(meta.get("lipstream.width", "nan"))
        precision = meta.get("lipstream.precision", "fp32")
        cuda = self._session.get_providers()[0] == "CUDAExecutionProvider"
        self.device = "cuda" if cuda else "cpu"
        self.name = f"onnx-{precision}" + ("-cuda" if cuda else "")
        self._workers: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        if workers > 1:
            self._workers = [
                ort.InferenceSession(
                    str(model_path), session_options(1, False), providers=self.providers
                )
                for _ in range(workers)
            ]
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lipstream-onnx")

    @property
    def frame_count(self) -> int:
        """How many avatar frames (crops) this runtime can draw from."""
        return len(self._crops)

    def generate(self, frame_ids: Sequence[int], audio_windows: np.ndarray) -> np.ndarray:
        """uint8 BGR mouths [N,320,320,3] for ``frame_ids`` and float32 audio [N,32,16,16]."""
        ids, audio = check_request(frame_ids, audio_windows, len(self._crops))
        if not len(ids):
            return _empty_mouths()
        crops = self._crops.take(ids, axis=0)
        if self.device == "cuda":
            return self._run(self._session, crops, audio)  # a GPU wants the whole batch at once
        out = np.empty((len(ids), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        k = len(self._workers)
        shared = len(ids) - len(ids) % k if k > 1 else 0
        if shared:
            assert self._pool is not None
            # Worker j makes frames j, j+k, j+2k, ...
            jobs = [
                self._pool.submit(self._run_each, session, crops, audio, out, range(j, shared, k))
                for j, session in enumerate(self._workers)
            ]
            for job in jobs:
                job.result()
        self._run_each(self._session, crops, audio, out, range(shared, len(ids)))
        return out

    @staticmethod
    def _run(session, crops, audio) -> np.ndarray:
        return session.run(["mouths"], {"crops": crops, "audio": audio})[0]

    @classmethod
    def _run_each(cls, session, crops, audio, out, indices: range) -> None:
        # One frame per run: on CPU a batch of several frames is slower per frame, its
        # activations no longer fit in the core's cache.
        for i in indices:
            out[i : i + 1] = cls._run(session, crops[i : i + 1], audio[i : i + 1])

    def close(self) -> None:
        """Stop the worker threads (the sessions are freed with the object)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            self._workers = []


class OnnxAudioEncoder:
    """The exported audio encoder under ONNX Runtime: ``encode(mel [N,1,80,16]) -> [N,512]``."""

    def __init__(
        self,
        model_path: str | Path,
        providers: str | Sequence[str] = "auto",
        *,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.providers = onnx_providers(providers)
        # No spinning: the encoder runs between generator calls, and threads left spinning
        # after it would take the cores the generator needs next.
        self._session = ort.InferenceSession(
            str(model_path), session_options(threads, spinning=False), providers=self.providers
        )
        self.name = "onnx-audio-encoder"

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """float32 features [N,512] for float32 mel windows [N,1,80,16]."""
        windows = check_mel(windows)
        if not len(windows):
            return np.zeros((0, FEATURE_SIZE), np.float32)
        return self._session.run(["features"], {"mel": windows})[0]

    __call__ = encode


# --------------------------------------------------------------------------------------------
# PyTorch (optional dependency, imported on construction only)


def _torch_device(device: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class TorchGenerator:
    """Runs the PyTorch generator: fp16 autocast on CUDA, fp32 channels-last on CPU."""

    def __init__(self, generator: Any, crops320: np.ndarray, device: str = "auto") -> None:
        import torch

        from lipstream.model.synctalk2d import generator_from_state

        crops = check_crops(crops320)
        net: Any
        if isinstance(generator, torch.nn.Module):
            net = generator
        else:
            net = generator_from_state(generator, "generator state_dict")
        self.device = _torch_device(device)
        self.width = float(net.cfg.width)
        self._cuda = self.device.type == "cuda"
        self.name = "torch-cuda-fp16" if self._cuda else "torch-fp32"
        # channels-last lets oneDNN skip its layout reorders around every convolution on CPU
        self._net = net.eval().to(self.device, memory_format=torch.channels_last)
        self._crops = torch.from_numpy(crops).to(self.device)
        keep = torch.ones(1, 1, IMAGE_SIZE, IMAGE_SIZE, device=self.device)
        keep[:, :, MASK.rows, MASK.cols] = 0
        self._keep = keep
        self._torch = torch

    @property
    def frame_count(self) -> int:
        """How many avatar frames (crops) this runtime can draw from."""
        return int(self._crops.shape[0])

    def generate(self, frame_ids: Sequence[int], audio_windows: np.ndarray) -> np.ndarray:
        """uint8 BGR mouths [N,320,320,3] for ``frame_ids`` and float32 audio [N,32,16,16]."""
        torch = self._torch
        ids, audio = check_request(frame_ids, audio_windows, self.frame_count)
        if not len(ids):
            return _empty_mouths()
        with torch.inference_mode():
            index = torch.from_numpy(ids).to(self.device)
            crops = self._crops.index_select(0, index).permute(0, 3, 1, 2).float() / 255.0
            image = torch.cat([crops, crops * self._keep], dim=1)
            image = image.contiguous(memory_format=torch.channels_last)
            mel = torch.from_numpy(audio).to(self.device)
            if self._cuda:
                with torch.autocast("cuda", dtype=torch.float16):
                    out = self._net(image, mel)
            else:
                out = self._net(image, mel)
            # truncation toward zero, as numpy's astype(uint8) does in SyncTalk_2D's loop
            mouths = (out.float() * 255.0).to(torch.uint8).permute(0, 2, 3, 1)
            return mouths.contiguous().cpu().numpy()


class TorchAudioEncoder:
    """The PyTorch audio encoder: ``encode(mel [N,1,80,16]) -> [N,512]``."""

    def __init__(self, encoder: Any, device: str = "auto") -> None:
        import torch

        from lipstream.model.synctalk2d import audio_encoder_from_state

        if isinstance(encoder, torch.nn.Module):
            net = encoder
        else:
            net = audio_encoder_from_state(encoder, "audio encoder state_dict")
        self.device = _torch_device(device)
        self._net = net.eval().to(self.device)
        self.name = f"torch-audio-encoder-{self.device.type}"
        self._torch = torch

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """float32 features [N,512] for float32 mel windows [N,1,80,16]."""
        windows = check_mel(windows)
        if not len(windows):
            return np.zeros((0, FEATURE_SIZE), np.float32)
        with self._torch.inference_mode():
            out = self._net(self._torch.from_numpy(windows).to(self.device))
            return out.float().cpu().numpy()

    __call__ = encode
