"""A model package opened for inference: its generator runtime and its audio encoder.

Which runtime ``auto`` takes is decided here, when the model is opened, from what the machine
has: on a CUDA GPU the float ONNX graph; on a CPU that OpenVINO can run int8 on natively (VNNI or
AMX), OpenVINO on the package's int8 graph, which measured 1.3-2x faster than ONNX Runtime's
int8 on such CPUs (docs/benchmarks.md); else ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipstream.errors import InvalidInput, PackageError
from lipstream.model.openvino_runtime import (
    OpenVinoAudioEncoder,
    OpenVinoGenerator,
    cpu_capabilities,
    openvino_available,
)
from lipstream.model.package import ModelPackage, load_package
from lipstream.model.runtime import (
    AudioFeatureEncoder,
    MouthGenerator,
    OnnxAudioEncoder,
    OnnxGenerator,
    TorchAudioEncoder,
    TorchGenerator,
    onnx_providers,
)
from lipstream.settings import RUNTIME_CHOICES  # what a user may ask for

_WEIGHTS = {
    "openvino-int8": ("onnx.generator_int8", "onnx.audio_encoder"),
    "openvino-bf16": ("onnx.generator_fp32", "onnx.audio_encoder"),
    "onnx-int8": ("onnx.generator_int8", "onnx.audio_encoder"),
    "onnx-fp32": ("onnx.generator_fp32", "onnx.audio_encoder"),
    "torch": ("pytorch.generator", "pytorch.audio_encoder"),
}


@dataclass(frozen=True)
class OpenedModel:
    """A package opened for inference: everything that turns audio into one avatar's mouths."""

    package: ModelPackage
    generator: MouthGenerator  # audio features and frame ids -> mouth regions
    encoder: AudioFeatureEncoder  # mel windows -> audio features
    runtime: str  # the runtime choice that was resolved, e.g. "onnx-int8"


def _cuda_available() -> bool:
    return onnx_providers("auto")[0] == "CUDAExecutionProvider"


def _machine_runs(kind: str, device: str) -> str | None:
    """Why this machine cannot run runtime ``kind`` on ``device``, or None when it can."""
    if not kind.startswith("openvino-"):
        return None
    if device == "cuda":
        return "OpenVINO runs on the CPU here (DEVICE=cuda asks for a GPU)"
    if not openvino_available():
        return "the openvino package is not installed (pip install openvino)"
    if kind == "openvino-bf16" and "BF16" not in cpu_capabilities():
        return "this CPU has no native bfloat16 (AMX or AVX512-BF16)"
    return None


def resolve_runtime(package: ModelPackage, choice: str = "auto", device: str = "auto") -> str:
    """The runtime to use: ``choice`` itself, or for "auto" the fastest the package and the
    machine allow (see the module's docstring)."""
    if choice not in RUNTIME_CHOICES:
        raise InvalidInput(
            f"unknown runtime {choice!r}; choose one of {', '.join(RUNTIME_CHOICES)}"
        )
    available = [k for k, keys in _WEIGHTS.items() if all(package.weights(w) for w in keys)]
    if choice != "auto":
        if choice not in available:
            raise PackageError(
                f"model package {package.name} has no weights for runtime {choice} "
                f"(it has: {', '.join(available) or 'none'}; run `lipstream export`)"
            )
        why = _machine_runs(choice, device)
        if why:
            raise InvalidInput(f"runtime {choice} cannot run on this machine: {why}")
        return choice
    if device == "cuda" or (device == "auto" and _cuda_available()):
        # on a GPU the float graph is faster than int8, and exact
        order = ["onnx-fp32", "torch", "onnx-int8"]
    elif "INT8" in cpu_capabilities():  # VNNI or AMX: OpenVINO runs int8 natively
        order = ["openvino-int8", "openvino-bf16", "onnx-int8", "onnx-fp32", "torch"]
    else:
        order = ["onnx-int8", "onnx-fp32", "torch"]
    for kind in order:
        if kind in available and _machine_runs(kind, device) is None:
            return kind
    raise PackageError(f"model package {package.name} holds no complete set of weights")


def open_model(
    package: ModelPackage | str | Path, runtime: str = "auto", device: str = "auto"
) -> OpenedModel:
    """Load a package's crops and weights into a runtime (device: auto, cpu or cuda)."""
    pkg = package if isinstance(package, ModelPackage) else load_package(package)
    kind = resolve_runtime(pkg, runtime, device)
    generator_key, encoder_key = _WEIGHTS[kind]
    generator_path, encoder_path = pkg.weights(generator_key), pkg.weights(encoder_key)
    assert generator_path is not None and encoder_path is not None  # resolve_runtime checked
    crops = pkg.load_inner_crops()
    if kind == "torch":
        from lipstream.model.synctalk2d import load_audio_encoder, load_generator

        gen: MouthGenerator = TorchGenerator(load_generator(generator_path), crops, device)
        enc: AudioFeatureEncoder = TorchAudioEncoder(load_audio_encoder(encoder_path), device)
    elif kind.startswith("openvino-"):
        gen = OpenVinoGenerator(generator_path, crops, kind.removeprefix("openvino-"))
        enc = OpenVinoAudioEncoder(encoder_path)
    else:
        providers = "cpu" if device == "cpu" else "auto"
        gen = OnnxGenerator(generator_path, crops, providers)
        enc = OnnxAudioEncoder(encoder_path, providers)
    return OpenedModel(pkg, gen, enc, kind)
