"""The runtimes turn frame ids and audio windows into SyncTalk_2D-style mouth regions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from lipstream.bench import random_generator_state, synthetic_audio, synthetic_crops
from lipstream.errors import InvalidInput
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.export import export_audio_encoder, export_generator
from lipstream.model.network import Generator, GeneratorConfig
from lipstream.model.runtime import (
    AudioFeatureEncoder,
    MouthGenerator,
    OnnxAudioEncoder,
    OnnxGenerator,
    TorchAudioEncoder,
    TorchGenerator,
)

FRAMES = 4


@pytest.fixture(scope="module")
def generator() -> Generator:
    net = Generator(GeneratorConfig(width=0.25))
    net.load_state_dict(random_generator_state(0.25))
    return net.eval()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return synthetic_crops(FRAMES)


@pytest.fixture(scope="module")
def generate_onnx(generator, tmp_path_factory):
    return export_generator(generator, tmp_path_factory.mktemp("onnx") / "generate.onnx")


@pytest.fixture(scope="module")
def onnx_runtime(generate_onnx, crops) -> OnnxGenerator:
    return OnnxGenerator(generate_onnx, crops, providers="cpu")


def test_onnx_and_torch_runtimes_agree(onnx_runtime, generator, crops):
    torch_runtime = TorchGenerator(generator.state_dict(), crops, device="cpu")
    audio = synthetic_audio(3)
    a = onnx_runtime.generate([3, 0, 1], audio)
    b = torch_runtime.generate([3, 0, 1], audio)
    assert a.shape == b.shape == (3, 320, 320, 3)
    assert a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    for runtime in (onnx_runtime, torch_runtime):
        assert isinstance(runtime, MouthGenerator)
        assert runtime.width == 0.25
    assert onnx_runtime.name == "onnx-fp32" and torch_runtime.name == "torch-fp32"


def test_each_mouth_comes_from_its_own_frame(onnx_runtime):
    audio = synthetic_audio(2)
    both = onnx_runtime.generate([2, 0], audio)
    np.testing.assert_array_equal(both[0], onnx_runtime.generate([2], audio[:1])[0])
    np.testing.assert_array_equal(both[1], onnx_runtime.generate([0], audio[1:])[0])
    assert not np.array_equal(both[0], both[1])


def test_frame_parallel_workers_give_the_same_mouths(generate_onnx, crops, onnx_runtime):
    parallel = OnnxGenerator(generate_onnx, crops, providers="cpu", threads=2, workers=2)
    audio = synthetic_audio(5)
    ids = [3, 1, 0, 2, 3]  # five frames: two per worker and one left over
    try:
        np.testing.assert_array_equal(
            parallel.generate(ids, audio),
            OnnxGenerator(generate_onnx, crops, workers=1).generate(ids, audio),
        )
    finally:
        parallel.close()


def test_empty_request_gives_no_mouths(onnx_runtime):
    out = onnx_runtime.generate([], np.zeros((0, 32, 16, 16), np.float32))
    assert out.shape == (0, 320, 320, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("ids", "audio", "message"),
    [
        ([0], np.zeros((1, 32, 16, 8), np.float32), r"shape \[N,32,16,16\]"),
        ([0], np.zeros((1, 32, 16, 16), np.float64), "float32"),
        ([0], [[0.0]], "numpy array"),
        ([FRAMES], np.zeros((1, 32, 16, 16), np.float32), f"frame id {FRAMES} is out of range"),
        ([-1], np.zeros((1, 32, 16, 16), np.float32), "frame id -1 is out of range"),
        ([0, 1], np.zeros((1, 32, 16, 16), np.float32), "2 frame ids but 1 audio windows"),
        ([0.5], np.zeros((1, 32, 16, 16), np.float32), "integers"),
        ([0], np.full((1, 32, 16, 16), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(onnx_runtime, ids, audio, message):
    with pytest.raises(InvalidInput, match=message):
        onnx_runtime.generate(ids, audio)


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        (np.zeros((2, 320, 320, 3), np.float32), "uint8"),
        (np.zeros((2, 328, 328, 3), np.uint8), r"\[F,320,320,3\]"),
        (np.zeros((0, 320, 320, 3), np.uint8), "at least one frame"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_crops_are_refused(generate_onnx, generator, crops, message):
    with pytest.raises(InvalidInput, match=message):
        OnnxGenerator(generate_onnx, crops, providers="cpu")
    with pytest.raises(InvalidInput, match=message):
        TorchGenerator(generator, crops, device="cpu")


def test_serving_needs_no_torch(generate_onnx, tmp_path):
    """The ONNX runtime imports and runs in a process where torch cannot be imported."""
    script = textwrap.dedent(
        f"""
        import importlib.abc
        import sys

        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, NoTorch())  # any "import torch" now fails, as when absent
        import numpy as np
        from lipstream.model.runtime import OnnxGenerator
        crops = np.zeros((2, 320, 320, 3), np.uint8)
        out = OnnxGenerator({str(generate_onnx)!r}, crops).generate(
            [1], np.zeros((1, 32, 16, 16), np.float32)
        )
        assert out.shape == (1, 320, 320, 3), out.shape
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_audio_encoder_runtimes_agree(tmp_path):
    torch.manual_seed(0)
    net = AudioEncoder().eval()
    path = export_audio_encoder(net, tmp_path / "audio_encoder.onnx")
    mel = np.random.default_rng(0).uniform(-4, 4, (5, 1, 80, 16)).astype(np.float32)
    onnx_encoder = OnnxAudioEncoder(path, providers="cpu")
    torch_encoder = TorchAudioEncoder(net.state_dict(), device="cpu")
    a, b = onnx_encoder(mel), torch_encoder.encode(mel)
    assert a.shape == (5, 512) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    assert isinstance(onnx_encoder, AudioFeatureEncoder)
    with pytest.raises(InvalidInput, match=r"\[N,1,80,16\]"):
        onnx_encoder(np.zeros((1, 80, 16), np.float32))
    with pytest.raises(InvalidInput, match="float32"):
        torch_encoder(mel.astype(np.float64))


def test_every_runtime_a_user_may_choose_has_weights_and_a_benchmark():
    from lipstream.bench_runtimes import RUNTIMES
    from lipstream.model import engine
    from lipstream.settings import RUNTIME_CHOICES

    choices = set(RUNTIME_CHOICES) - {"auto"}
    assert set(engine._WEIGHTS) == choices
    assert set(RUNTIMES) - {"synctalk2d-eager"} == choices
