"""Exporting a package's PyTorch weights to ONNX fp32 and int8, in place, in one call.

int8 is calibrated on the package's own frames and speech, and its fidelity to fp32 is measured
on those frames and recorded in the package's metrics (``int8_psnr_db``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lipstream.audio.features import offline_features, torch_encoder
from lipstream.audio.files import read_audio_file
from lipstream.audio.timeline import SAMPLE_RATE
from lipstream.errors import InvalidInput, PackageError
from lipstream.model.package import ModelPackage, load_package
from lipstream.model.package_writer import add_weights, update_metrics
from lipstream.model.quality import psnr
from lipstream.schedule import pingpong_frame_id

# Frames compared between int8 and fp32: enough for a stable PSNR, few enough to stay quick.
FIDELITY_FRAMES = 100


def calibration_audio(package: ModelPackage, audio: str | Path | None) -> np.ndarray:
    """16 kHz speech to calibrate int8 on: ``audio`` if given, else the package's own."""
    source = Path(audio) if audio is not None else package.speech_path
    if source is None:
        raise InvalidInput(
            f"model package {package.name} ships no speech.wav to calibrate int8 on; "
            "pass a speech file (--calibration-audio) or export without int8 (--no-int8)"
        )
    return read_audio_file(source, sample_rate=SAMPLE_RATE).samples


def int8_fidelity(
    fp32_path: Path, int8_path: Path, crops: np.ndarray, windows: np.ndarray
) -> float:
    """PSNR (dB) of int8 mouths against fp32 mouths over the avatar's frames and speech."""
    from lipstream.model.runtime import OnnxGenerator

    count = min(FIDELITY_FRAMES, len(windows))
    ids = [pingpong_frame_id(k, len(crops)) for k in range(count)]
    fp32 = OnnxGenerator(fp32_path, crops, "cpu").generate(ids, windows[:count])
    int8 = OnnxGenerator(int8_path, crops, "cpu").generate(ids, windows[:count])
    return min(psnr(fp32, int8), 100.0)  # identical outputs: a finite number for the manifest


def export_package(
    package_path: str | Path, *, int8: bool = True, calibration: str | Path | None = None
) -> ModelPackage:
    """Add ONNX weights (generator fp32, audio encoder, and int8 unless told not) to a package."""
    from lipstream.model.export import (
        export_audio_encoder,
        export_generator,
        export_generator_network,
    )
    from lipstream.model.quantize import quantize_generator
    from lipstream.model.synctalk2d import load_audio_encoder, load_generator

    package = load_package(package_path)
    gen_path = package.weights("pytorch.generator")
    enc_path = package.weights("pytorch.audio_encoder")
    if gen_path is None or enc_path is None:
        raise PackageError(f"model package {package.name} has no PyTorch weights to export from")
    generator, encoder = load_generator(gen_path), load_audio_encoder(enc_path)
    speech = calibration_audio(package, calibration) if int8 else None

    with tempfile.TemporaryDirectory(prefix="lipstream-export-") as tmp:
        out = Path(tmp)
        files = {
            "onnx.generator_fp32": export_generator(generator, out / "generator_fp32.onnx"),
            "onnx.audio_encoder": export_audio_encoder(encoder, out / "audio_encoder.onnx"),
        }
        metrics: dict[str, float] = {}
        if speech is not None:
            crops = package.load_inner_crops()
            windows = offline_features(speech, torch_encoder(encoder), package.layout)
            network = export_generator_network(generator, out / "network.onnx")
            int8_path = out / "generator_int8.onnx"
            files["onnx.generator_int8"] = quantize_generator(network, int8_path, crops, windows)
            metrics["int8_psnr_db"] = round(
                int8_fidelity(files["onnx.generator_fp32"], int8_path, crops, windows), 2
            )
        for key, file in files.items():
            package = add_weights(package.path, key, file)
    if metrics:
        package = update_metrics(package.path, metrics)
    return package
