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
from lipstream.avatar.package_evaluation import evaluate_package, lips_region, package_networks
from lipstream.avatar.training_data import load_training_data
from lipstream.cli import main
from lipstream.errors import InvalidInput, PackageError
from lipstream.geometry import CropBox, inner
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
    for region in ("mouth", "lips"):
        for key in (f"psnr_{region}_db", f"ssim_{region}", f"psnr_{region}_cross_db"):
            assert np.isfinite(metrics[key]), key
        assert 0 < metrics[f"ssim_{region}"] <= 1 and 0 < metrics[f"ssim_{region}_cross"] <= 1
    image = cv2.imread(str(sheet))
    data = load_training_data(fake_dataset.path)
    rows, cols = lips_region(data.landmarks[36:], [data.box(i) for i in range(36, 40)])
    # the real lips above the generated ones, side by side for a few held-out frames
    assert image is not None and image.shape[0] == 2 * (rows.stop - rows.start)
    assert image.shape[1] % (cols.stop - cols.start) == 0


def test_the_lips_region_is_the_box_of_the_lip_landmarks_inside_the_network_region() -> None:
    box = CropBox(100, 200, 264, 364)  # 164 px: twice the 328 px crop's scale
    lips = np.zeros((68, 2), dtype=np.float32)
    lips[48:60] = [[150, 250], [214, 250], [182, 240], [182, 266]] * 3  # 64 x 26 px
    rows, cols = lips_region(np.stack([lips, lips + 1]), [box, CropBox(101, 201, 265, 365)])
    # 240..266 -> 80..132 in the crop, 76..128 in the network region, +-13 margin
    assert (rows.start, rows.stop) == (63, 141)
    # 150..214 -> 100..228 in the crop, 96..224 in the network region, +-32 margin
    assert (cols.start, cols.stop) == (64, 256)
    with pytest.raises(InvalidInput, match="do not match"):
        lips_region(np.stack([lips]), [box, box])


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
