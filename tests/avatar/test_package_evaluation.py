"""``lipstream evaluate``: a finished package measured on a dataset's held-out frames, whether it
ships PyTorch weights or only ONNX graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipstream.audio.features import offline_features
from lipstream.avatar.evaluate import generate
from lipstream.avatar.package_evaluation import evaluate_package, package_networks
from lipstream.avatar.training_data import load_training_data
from lipstream.cli import main
from lipstream.errors import PackageError
from lipstream.geometry import inner
from lipstream.model.package import load_package
from lipstream.model.runtime import OnnxAudioEncoder, OnnxGenerator


def test_the_onnx_network_inside_a_serving_package_makes_the_served_mouths(
    demo_package, fake_dataset, tmp_path
) -> None:
    package = load_package(demo_package)
    data = load_training_data(fake_dataset.path, package.layout)
    frames = [3, 17, 30]
    generator, encoder = package_networks(package, tmp_path)
    measured = generate(generator, encoder, data.crops, torch.from_numpy(data.mel_windows), frames)
    served_generator = OnnxGenerator(
        package.weights("onnx.generator_fp32"),
        np.ascontiguousarray(inner(data.crops)),
        "cpu",
        workers=1,
    )
    served_encoder = OnnxAudioEncoder(package.weights("onnx.audio_encoder"), "cpu")
    features = offline_features(data.speech, served_encoder.encode, package.layout)
    served = served_generator.generate(frames, features[frames])
    np.testing.assert_array_equal(measured, served)


def test_evaluate_reports_the_held_out_metrics_and_a_contact_sheet(
    demo_package, fake_dataset, measure_opening, tmp_path
) -> None:
    sheet = tmp_path / "sheet.jpg"
    metrics = evaluate_package(
        demo_package, fake_dataset.path, measure_opening=measure_opening, contact_sheet=sheet
    )
    assert metrics["frames"] == 4  # the last 10% of 40
    assert metrics["lookahead_ms"] == 452.5
    for key in ("psnr_mouth_db", "ssim_mouth", "psnr_mouth_cross_db", "ssim_mouth_cross"):
        assert np.isfinite(metrics[key]), key
    assert 0 < metrics["ssim_mouth"] <= 1
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] == 153  # two rows of half-size mouths


def test_evaluate_command_prints_json(demo_package, fake_dataset, capsys) -> None:
    assert main(["evaluate", str(demo_package), "--dataset", str(fake_dataset.path), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["frames"] == 4 and "psnr_mouth_db" in metrics


def test_a_package_without_usable_weights_is_refused(demo_package, fake_dataset, tmp_path: Path):
    copy = Path(shutil.copytree(demo_package, tmp_path / "demo"))
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["weights"]["onnx"]["generator_fp32"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="neither PyTorch weights nor the ONNX fp32"):
        evaluate_package(copy, fake_dataset.path)
