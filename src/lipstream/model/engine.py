"""A model package opened for inference: its generator runtime and its audio encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lipstream.errors import InvalidInput, PackageError
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

# What a user may ask for; "auto" takes the fastest the package holds for the device.
RUNTIME_CHOICES = ("auto", "onnx-int8", "onnx-fp32", "torch")
_WEIGHTS = {
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


def resolve_runtime(package: ModelPackage, choice: str = "auto") -> str:
    """The runtime kind to use: ``choice`` itself, or for "auto" the best the package holds."""
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
        return choice
    # int8 is the fastest on CPUs; on a GPU the float graph is faster and exact.
    order = ["onnx-fp32", "torch", "onnx-int8"] if _cuda_available() else list(_WEIGHTS)
    for kind in order:
        if kind in available:
            return kind
    raise PackageError(f"model package {package.name} holds no complete set of weights")


def open_model(
    package: ModelPackage | str | Path, runtime: str = "auto", device: str = "auto"
) -> OpenedModel:
    """Load a package's crops and weights into a runtime (device: auto, cpu or cuda)."""
    pkg = package if isinstance(package, ModelPackage) else load_package(package)
    kind = resolve_runtime(pkg, runtime)
    generator_key, encoder_key = _WEIGHTS[kind]
    generator_path, encoder_path = pkg.weights(generator_key), pkg.weights(encoder_key)
    assert generator_path is not None and encoder_path is not None  # resolve_runtime checked
    crops = pkg.load_inner_crops()
    if kind == "torch":
        from lipstream.model.synctalk2d import load_audio_encoder, load_generator

        gen: MouthGenerator = TorchGenerator(load_generator(generator_path), crops, device)
        enc: AudioFeatureEncoder = TorchAudioEncoder(load_audio_encoder(encoder_path), device)
    else:
        providers = "cpu" if device == "cpu" else "auto"
        gen = OnnxGenerator(generator_path, crops, providers)
        enc = OnnxAudioEncoder(encoder_path, providers)
    return OpenedModel(pkg, gen, enc, kind)
