"""Importing a SyncTalk_2D dataset gives a working package, or an error naming what is wrong."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lipstream.errors import CheckpointError, InvalidInput, PackageError
from lipstream.model.checkpoint import read_state_dict
from lipstream.model.commands import register
from lipstream.model.import_synctalk2d import find_checkpoint, import_synctalk2d
from lipstream.model.package import load_package
from lipstream.model.synctalk2d import load_audio_encoder, load_generator


@pytest.fixture
def dataset(synctalk2d_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the fake dataset that a test may damage."""
    return Path(shutil.copytree(synctalk2d_dataset, tmp_path / "demo"))


def _import(dataset: Path, models: Path, **kw):
    kw.setdefault("audio_encoder", dataset / "audio_visual_encoder.pth")
    return import_synctalk2d(dataset, name="demo", models_dir=models, progress=False, **kw)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipstream")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_imported_weights_are_the_newest_checkpoint(fake_package, synctalk2d_dataset):
    pkg = load_package(fake_package)
    assert pkg.source["epoch"] == 20 and pkg.source["checkpoint"] == "20.pth"
    newest = read_state_dict(synctalk2d_dataset / "checkpoint" / "demo" / "20.pth")
    stored = read_state_dict(pkg.weights("pytorch.generator"))
    assert stored.keys() == newest.keys()
    assert all(torch.equal(stored[k], newest[k]) for k in newest)
    net = load_generator(pkg.weights("pytorch.generator"))
    assert net.cfg.width == 0.25
    load_audio_encoder(pkg.weights("pytorch.audio_encoder"))  # module keys load strictly


def test_explicit_checkpoint_file_or_folder_is_used(synctalk2d_dataset):
    folder = synctalk2d_dataset / "checkpoint" / "demo"
    assert find_checkpoint(synctalk2d_dataset, folder / "5.pth") == folder / "5.pth"
    assert find_checkpoint(synctalk2d_dataset, folder) == folder / "20.pth"
    with pytest.raises(InvalidInput, match=r"checkpoint not found: .*7\.pth"):
        find_checkpoint(synctalk2d_dataset, folder / "7.pth")


def test_synctalk2d_repository_layout_is_found(dataset, tmp_path):
    # SyncTalk_2D keeps dataset/<name>/ beside checkpoint/<name>/ in its repository.
    repo = tmp_path / "repo"
    (repo / "dataset").mkdir(parents=True)
    moved = Path(shutil.move(dataset, repo / "dataset" / "demo"))
    shutil.move(moved / "checkpoint", repo / "checkpoint")
    assert find_checkpoint(moved) == repo / "checkpoint" / "demo" / "20.pth"


def test_missing_checkpoint_says_where_it_looked(dataset):
    shutil.rmtree(dataset / "checkpoint")
    with pytest.raises(InvalidInput, match=r"no generator checkpoint .* looked in .*checkpoint"):
        find_checkpoint(dataset)


def test_missing_frames_folder_is_named(dataset, tmp_path):
    shutil.rmtree(dataset / "full_body_img")
    with pytest.raises(InvalidInput, match=r"full_body_img is missing"):
        _import(dataset, tmp_path / "models")


def test_frame_without_landmarks_is_named(dataset, tmp_path):
    (dataset / "landmarks" / "7.lms").unlink()
    with pytest.raises(InvalidInput, match=r"lacks landmarks for frame\(s\) 7\.lms"):
        _import(dataset, tmp_path / "models")


def test_gap_in_frames_is_named(dataset, tmp_path):
    (dataset / "full_body_img" / "3.jpg").unlink()
    with pytest.raises(InvalidInput, match=r"lacks frame\(s\) 3\.jpg"):
        _import(dataset, tmp_path / "models")


def test_checkpoint_with_wrong_keys_is_refused(dataset, tmp_path):
    path = dataset / "checkpoint" / "demo" / "20.pth"
    state = torch.load(path, weights_only=True)
    state["outc.conv.extra"] = state.pop("outc.conv.bias")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"generator checkpoint: .*outc\.conv\.bias"):
        _import(dataset, tmp_path / "models")


def test_missing_audio_encoder_is_named(dataset, tmp_path):
    with pytest.raises(InvalidInput, match=r"audio encoder checkpoint not found: .*ave\.pth"):
        _import(dataset, tmp_path / "models", audio_encoder=dataset / "ave.pth")


def test_bad_landmarks_midway_leave_no_package(dataset, tmp_path):
    (dataset / "landmarks" / "10.lms").write_text("1 2\nnot numbers\n")
    models = tmp_path / "models"
    with pytest.raises(InvalidInput, match=r"frame 10\.jpg: .*10\.lms: line 2"):
        _import(dataset, models)
    assert list(models.iterdir()) == []


def test_existing_package_needs_force(fake_package, synctalk2d_dataset):
    models = fake_package.parent
    with pytest.raises(PackageError, match=r"already exists"):
        _import(synctalk2d_dataset, models)


def test_cli_imports_then_checks(synctalk2d_dataset, tmp_path, capsys):
    models = tmp_path / "models"
    args = _parser().parse_args(
        [
            "import-synctalk2d",
            str(synctalk2d_dataset),
            "--audio-encoder",
            str(synctalk2d_dataset / "audio_visual_encoder.pth"),
            "--name",
            "alice",
            "--checkpoint",
            str(synctalk2d_dataset / "checkpoint" / "demo" / "5.pth"),
            "--models-dir",
            str(models),
            "--float16-weights",
        ]
    )
    assert args.func(args) == 0
    pkg = load_package(models / "alice")
    assert pkg.source["epoch"] == 5
    assert read_state_dict(pkg.weights("pytorch.generator"))["outc.conv.weight"].dtype == (
        torch.float16
    )
    load_generator(pkg.weights("pytorch.generator"))  # half-precision weights still load

    args = _parser().parse_args(["check-package", str(models / "alice")])
    assert args.func(args) == 0
    assert "alice 1.0.0" in capsys.readouterr().out

    (models / "alice" / "video.mp4").unlink()
    assert args.func(args) == 1
    assert "video.file: video.mp4 is missing" in capsys.readouterr().err


def test_dataset_speech_is_shipped_as_16khz_wav(fake_package):
    from lipstream.audio.files import read_audio_file

    package = load_package(fake_package)
    assert package.speech_path is not None
    speech = read_audio_file(package.speech_path)
    assert speech.sample_rate == 16000
    assert abs(speech.duration - package.frame_count / 25) < 0.01
    assert np.abs(speech.samples).max() > 1000  # the speech itself, not silence


def test_speech_file_of_the_wrong_format_is_named(fake_package, tmp_path):
    import shutil
    import wave

    package = Path(shutil.copytree(fake_package, tmp_path / "copy"))
    with wave.open(str(package / "speech.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(b"\0" * 400)
    with pytest.raises(PackageError, match=r"audio.speech_file: speech.wav must be 16000 Hz mono"):
        load_package(package)
