"""Training checkpoints on disk: saved as a run goes, found again by a resumed run, pruned.

Checkpoint N is three files in ``<run_dir>/checkpoints``: ``step_N.safetensors`` (the weights of
every network, each under its own name as a prefix), ``step_N.optimizer.pt`` (the optimiser's
state) and ``step_N.json`` (the step, the smoothed loss, the training time, the config). Each is
written to a hidden temporary file and renamed into place, the weights last: they are what marks
a checkpoint as present, so an interrupted save is never picked up by a resume.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lipstream.errors import CheckpointError

CHECKPOINTS_DIR = "checkpoints"
_CHECKPOINT_RE = re.compile(r"^step_(\d+)\.safetensors$")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """One checkpoint read back: its progress record, the networks' and the optimiser's state."""

    path: Path  # the weights file
    info: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]

    def weights(self, network: str) -> dict[str, torch.Tensor]:
        """The state dict saved for ``network`` (its name in ``save_checkpoint``'s networks)."""
        prefix = f"{network}/"
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def save_checkpoint(
    directory: Path,
    step: int,
    networks: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    info: Mapping[str, Any],
) -> Path:
    """Write checkpoint ``step`` of ``networks`` (by name), ``optimizer`` and ``info``.

    Returns the weights file, ``directory/step_<step>.safetensors``.
    """
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"step_{step}"
    tensors = {
        f"{name}/{k}": v.detach().cpu().contiguous()
        for name, network in networks.items()
        for k, v in network.state_dict().items()
    }
    torch.save(optimizer.state_dict(), _tmp(stem, ".optimizer.pt"))
    os.replace(_tmp(stem, ".optimizer.pt"), stem.with_suffix(".optimizer.pt"))
    _tmp(stem, ".json").write_text(json.dumps(dict(info), indent=2), encoding="utf-8")
    os.replace(_tmp(stem, ".json"), stem.with_suffix(".json"))
    save_file(tensors, str(_tmp(stem, ".safetensors")))
    os.replace(_tmp(stem, ".safetensors"), stem.with_suffix(".safetensors"))
    return stem.with_suffix(".safetensors")


def read_checkpoint(weights_path: Path, device: torch.device) -> Checkpoint:
    """Read the checkpoint whose weights file is ``weights_path``, optimiser state on ``device``."""
    from safetensors.torch import load_file

    stem = weights_path.with_suffix("")
    try:
        info = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        tensors = load_file(str(weights_path))
        # weights_only: the optimiser state is tensors, numbers and lists, nothing to execute
        optimizer_state = torch.load(
            stem.with_suffix(".optimizer.pt"), map_location=device, weights_only=True
        )
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {weights_path}: {exc}") from exc
    return Checkpoint(weights_path, info, tensors, optimizer_state)


def _tmp(stem: Path, suffix: str) -> Path:
    return stem.parent / f".{stem.name}{suffix}.tmp"


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, weights file) of every complete checkpoint under ``run_dir``, oldest first."""
    directory = Path(run_dir) / CHECKPOINTS_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        stem = path.with_suffix("")
        if (
            match
            and stem.with_suffix(".json").is_file()
            and stem.with_suffix(".optimizer.pt").is_file()
        ):
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints under ``run_dir``."""
    for _, path in checkpoints(run_dir)[:-keep]:
        stem = path.with_suffix("")
        for suffix in (".safetensors", ".optimizer.pt", ".json"):
            stem.with_suffix(suffix).unlink(missing_ok=True)
