"""The OpenVINO runtimes on the demo avatar's own frames and speech."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio.features import offline_features
from lipstream.audio.files import read_audio_file
from lipstream.errors import InvalidInput
from lipstream.model import engine
from lipstream.model.engine import open_model, resolve_runtime
from lipstream.model.openvino_runtime import (
    OpenVinoAudioEncoder,
    OpenVinoGenerator,
    cpu_capabilities,
)
from lipstream.model.package import load_package

BF16 = "BF16" in cpu_capabilities()


@pytest.fixture(scope="module")
def reference(demo_package):
    """Two seconds of the demo's speech, and the mouths ONNX Runtime fp32 makes from it."""
    model = open_model(demo_package, "onnx-fp32", device="cpu")
    speech = read_audio_file(model.package.speech_path, 16000).samples[: 2 * 16000]
    features = offline_features(speech, model.encoder)
    ids = [k % model.package.frame_count for k in range(len(features))]
    return speech, ids, features, model.generator.generate(ids, features)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize(
    "kind",
    [
        "openvino-int8",
        pytest.param(
            "openvino-bf16", marks=pytest.mark.skipif(not BF16, reason="no native bfloat16")
        ),
    ],
)
def test_openvino_draws_the_fp32_mouths_within_30_db(reference, demo_package, kind):
    speech, ids, features, expected = reference
    model = open_model(demo_package, kind, device="cpu")
    assert model.runtime == kind and model.generator.name == kind
    assert model.generator.width == 0.25  # read from the graph's metadata
    # the whole pipeline, its own audio encoder included, against fp32
    own = offline_features(speech, model.encoder)
    assert np.abs(own - features).max() < 0.05 * np.abs(features).max()
    mouths = model.generator.generate(ids, own)
    assert mouths.shape == expected.shape and mouths.dtype == np.uint8
    assert psnr(mouths, expected) >= 30.0
    # a request of several frames (one per stream) draws what single frames draw
    single = np.stack(
        [model.generator.generate([i], own[k : k + 1])[0] for k, i in enumerate(ids[:4])]
    )
    np.testing.assert_array_equal(single, mouths[:4])


def test_openvino_checks_requests_like_every_runtime(demo_package):
    pkg = load_package(demo_package)
    gen = OpenVinoGenerator(pkg.weights("onnx.generator_int8"), pkg.load_inner_crops()[:10])
    with pytest.raises(InvalidInput, match="frame id 10 is out of range"):
        gen.generate([10], np.zeros((1, 32, 16, 16), np.float32))
    assert gen.generate([], np.zeros((0, 32, 16, 16), np.float32)).shape == (0, 320, 320, 3)
    with pytest.raises(InvalidInput, match="precision must be one of"):
        OpenVinoGenerator(pkg.weights("onnx.generator_int8"), pkg.load_inner_crops()[:2], "fp8")


def test_a_graph_that_is_not_a_generator_is_refused(demo_package):
    pkg = load_package(demo_package)
    with pytest.raises(InvalidInput, match="not a whole-generate graph"):
        OpenVinoGenerator(pkg.weights("onnx.audio_encoder"), pkg.load_inner_crops()[:2])


def test_a_runtime_the_machine_cannot_run_is_refused_with_the_reason(monkeypatch, demo_package):
    pkg = load_package(demo_package)
    monkeypatch.setattr(engine, "cpu_capabilities", lambda: ("FP32", "INT8"))
    with pytest.raises(InvalidInput, match="openvino-bf16 cannot run.*no native bfloat16"):
        resolve_runtime(pkg, "openvino-bf16", device="cpu")
    with pytest.raises(InvalidInput, match="OpenVINO runs on the CPU"):
        resolve_runtime(pkg, "openvino-int8", device="cuda")
    monkeypatch.setattr(engine, "openvino_available", lambda: False)
    with pytest.raises(InvalidInput, match="pip install openvino"):
        resolve_runtime(pkg, "openvino-int8", device="cpu")
    assert resolve_runtime(pkg, "auto", device="cpu") == "onnx-int8"  # falls back


def test_auto_on_a_cpu_without_native_int8_keeps_onnx_runtime(monkeypatch, demo_package):
    monkeypatch.setattr(engine, "cpu_capabilities", lambda: ("FP32",))
    assert resolve_runtime(load_package(demo_package), "auto", device="cpu") == "onnx-int8"
    monkeypatch.setattr(engine, "cpu_capabilities", lambda: ("FP32", "INT8", "BF16"))
    assert resolve_runtime(load_package(demo_package), "auto", device="cpu") == "openvino-int8"


def test_the_openvino_audio_encoder_takes_any_number_of_windows(demo_package):
    pkg = load_package(demo_package)
    encoder = OpenVinoAudioEncoder(pkg.weights("onnx.audio_encoder"))
    windows = np.random.default_rng(0).standard_normal((7, 1, 80, 16)).astype(np.float32)
    every = encoder(windows)
    assert every.shape == (7, 512) and every.dtype == np.float32
    np.testing.assert_array_equal(encoder(windows[2:3])[0], every[2])
    assert encoder(windows[:0]).shape == (0, 512)
    with pytest.raises(InvalidInput, match=r"mel windows must have shape \[N,1,80,16\]"):
        encoder(np.zeros((2, 80, 16), np.float32))
