"""Exporting a package to ONNX, opening it for inference, and rendering a talking video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lipstream.audio.files import read_audio_file, write_wav
from lipstream.audio.pcm import AudioChunk
from lipstream.cli import main
from lipstream.errors import InvalidInput, PackageError
from lipstream.model.engine import open_model, resolve_runtime
from lipstream.model.openvino_runtime import cpu_capabilities
from lipstream.model.package import load_package
from lipstream.render import render
from lipstream.video import read_video_frames


@pytest.fixture(scope="module")
def exported_package(fake_package: Path, tmp_path_factory) -> Path:
    path = Path(shutil.copytree(fake_package, tmp_path_factory.mktemp("models") / "demo"))
    assert main(["export", str(path)]) == 0
    return path


def test_export_adds_onnx_weights_and_int8_fidelity(exported_package):
    package = load_package(exported_package)
    assert set(package.weight_families) == {"pytorch", "onnx"}
    for key in ("onnx.generator_fp32", "onnx.generator_int8", "onnx.audio_encoder"):
        assert package.weights(key) is not None
    assert package.metrics["int8_psnr_db"] > 0


def test_every_runtime_draws_the_same_mouths(exported_package):
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((3, 32, 16, 16)).astype(np.float32)
    mouths = {}
    for kind in ("torch", "onnx-fp32", "onnx-int8"):
        model = open_model(exported_package, kind, device="cpu")
        assert model.runtime == kind
        mouths[kind] = model.generator.generate([0, 5, 11], windows)
        assert mouths[kind].shape == (3, 320, 320, 3) and mouths[kind].dtype == np.uint8
    # fp32 graphs agree with PyTorch up to truncation at a uint8 step
    diff = np.abs(mouths["torch"].astype(int) - mouths["onnx-fp32"].astype(int))
    assert diff.max() <= 1


def test_auto_runtime_on_cpu_prefers_int8(exported_package):
    kind = resolve_runtime(load_package(exported_package), device="cpu")
    # OpenVINO where the CPU runs int8 natively (VNNI or AMX), else ONNX Runtime
    assert kind == ("openvino-int8" if "INT8" in cpu_capabilities() else "onnx-int8")


def test_runtime_a_package_lacks_is_named(fake_package):
    with pytest.raises(PackageError, match="no weights for runtime onnx-int8.*lipstream export"):
        open_model(fake_package, "onnx-int8")
    with pytest.raises(InvalidInput, match="unknown runtime 'tensorrt'"):
        open_model(fake_package, "tensorrt")


def test_export_without_speech_asks_for_calibration_audio(fake_package, tmp_path, capsys):
    path = Path(shutil.copytree(fake_package, tmp_path / "pkg"))
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["audio"]["speech_file"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["export", str(path)]) == 2
    assert "--calibration-audio" in capsys.readouterr().err
    assert load_package(path).weights("onnx.generator_fp32") is None  # nothing half-added


def test_render_writes_one_frame_per_40ms_with_the_speech(exported_package, tmp_path):
    speech = np.sin(2 * np.pi * 150 * np.arange(22050) / 22050) * 8000
    write_wav(tmp_path / "say.wav", AudioChunk(speech.astype(np.int16), 22050))
    model = open_model(exported_package, "onnx-int8")
    count = render(tmp_path / "say.wav", model, tmp_path / "out.mp4")
    assert count == 25  # 1 s of speech
    frames = list(read_video_frames(tmp_path / "out.mp4"))
    assert len(frames) == 25
    assert frames[0].shape[:2] == (model.package.video_height, model.package.video_width)
    sound = read_audio_file(tmp_path / "out.mp4")
    assert abs(sound.duration - 1.0) < 0.05


def test_a_serving_only_package_drops_pytorch_and_still_runs(exported_package, tmp_path):
    from lipstream.model.package_writer import remove_weights

    path = Path(shutil.copytree(exported_package, tmp_path / "slim"))
    package = remove_weights(path, "pytorch")
    assert package.weight_families == ("onnx",)
    assert not (path / "generator.safetensors").exists()
    model = open_model(path)
    windows = np.zeros((1, 32, 16, 16), np.float32)
    assert model.generator.generate([0], windows).shape == (1, 320, 320, 3)


def test_bench_times_the_runtimes_a_package_ships(exported_package):
    from lipstream.bench import bench_package

    lines: list[str] = []
    _, timings = bench_package(
        exported_package, ("onnx-int8", "torch"), batch=2, seconds=0.1, log=lines.append
    )
    assert {(t.runtime, t.batch) for t in timings} == {
        ("onnx-int8", 1),
        ("onnx-int8", 2),
        ("torch-fp32", 1),
        ("torch-fp32", 2),
    }
    assert all(t.median_ms > 0 for t in timings)
