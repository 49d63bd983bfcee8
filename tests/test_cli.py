"""The ``lipstream`` command as a whole: every subcommand is there, missing extras are explained."""

from __future__ import annotations

import builtins

import pytest

import lipstream.avatar
from lipstream import cli


def test_every_subcommand_is_listed(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("import-synctalk2d", "export", "models", "bench", "render", "build", "train"):
        assert command in out


def test_a_subcommand_whose_extra_is_missing_says_what_to_install(monkeypatch, capsys):
    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torch)
    monkeypatch.delitem(__import__("sys").modules, "lipstream.avatar.train", raising=False)
    monkeypatch.delattr(lipstream.avatar, "train", raising=False)  # as if never imported
    assert cli.main(["train", "demo", "--steps", "3"]) == 2
    assert "pip install 'lipstream[torch]'" in capsys.readouterr().err
