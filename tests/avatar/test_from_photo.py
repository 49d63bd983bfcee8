"""An avatar from one portrait, end to end, and the clear errors on bad photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("piper")
skimage_data = pytest.importorskip("skimage.data")

from lipstream.avatar.from_photo import avatar_from_photo, read_portrait  # noqa: E402
from lipstream.avatar.train import TrainConfig  # noqa: E402
from lipstream.errors import InvalidInput  # noqa: E402
from lipstream.model.engine import open_model  # noqa: E402


@pytest.fixture(scope="module")
def portrait_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), skimage_data.astronaut()[:, :, ::-1])
    return path


def test_a_portrait_becomes_a_served_avatar(portrait_file, tmp_path) -> None:
    package = avatar_from_photo(
        portrait_file,
        "astro",
        datasets_dir=tmp_path / "datasets",
        models_dir=tmp_path / "models",
        seconds=4.0,
        idle_seconds=2.0,
        config=TrainConfig(width=0.125, steps=1, batch_size=2, threads=1),
        serving_only=True,
        progress=False,
    )
    assert package.weight_families == ("onnx",)
    assert package.frame_count == 50  # the idle clip, not the talking one
    assert "int8_psnr_db" in package.metrics and "psnr_mouth_db" in package.metrics
    dataset = json.loads((tmp_path / "datasets" / "astro" / "dataset.json").read_text())
    assert dataset["frame_count"] >= 4 * 25
    model = open_model(package)
    mouths = model.generator.generate([0, 49], np.zeros((2, 32, 16, 16), np.float32))
    assert mouths.shape == (2, 320, 320, 3)


def test_photo_without_a_face_is_refused(tmp_path) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((400, 400, 3), 180, np.uint8))
    with pytest.raises(InvalidInput, match="no face found"):
        read_portrait(blank)


def test_unreadable_and_missing_photos_are_named(tmp_path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    with pytest.raises(InvalidInput, match="not a readable image"):
        read_portrait(junk)
    with pytest.raises(InvalidInput, match="photo not found"):
        read_portrait(tmp_path / "missing.jpg")


def test_a_name_that_escapes_the_folder_is_refused_first(portrait_file, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="not allowed"):
        avatar_from_photo(portrait_file, "../evil", datasets_dir=tmp_path, models_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
