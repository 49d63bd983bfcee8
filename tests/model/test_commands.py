"""The model package subcommands, run as a user runs them."""

from __future__ import annotations

import json
import shutil

from lipstream.cli import main


def test_models_lists_valid_packages_and_names_broken_ones(fake_package, tmp_path, capsys):
    models = tmp_path / "models"
    name = json.loads((fake_package / "manifest.json").read_text())["name"]
    shutil.copytree(fake_package, models / name)
    (models / "broken").mkdir()
    assert main(["models", "--models-dir", str(models)]) == 0
    out, err = capsys.readouterr()
    assert "frames:" in out and "runtimes:  pytorch" in out
    assert "broken: not usable" in err and "manifest.json is missing" in err


def test_models_in_an_empty_folder_says_how_to_make_one(tmp_path, capsys):
    assert main(["models", "--models-dir", str(tmp_path)]) == 1
    assert "lipstream import-synctalk2d" in capsys.readouterr().err


def test_check_package_names_the_problem(fake_package, tmp_path, capsys):
    package = shutil.copytree(fake_package, tmp_path / "pkg")
    (package / "video.mp4").unlink()
    assert main(["check-package", str(package)]) == 1
    assert "video.mp4 is missing" in capsys.readouterr().err
