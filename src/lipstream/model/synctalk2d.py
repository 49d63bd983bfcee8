"""Loading SyncTalk_2D checkpoints unchanged: the ``unet_328`` generator and the AVE encoder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lipstream.errors import CheckpointError
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.checkpoint import load_strict, read_state_dict
from lipstream.model.network import Generator, GeneratorConfig
from lipstream.model.package_weights import WIDTH_PROBE  # [32*width, 12, 1, 1]

_ENCODER_PREFIX = "audio_encoder."


def generator_width(state: dict) -> float:
    """The width multiplier a generator state_dict was trained at."""
    if WIDTH_PROBE not in state:
        raise CheckpointError(f"not a generator checkpoint: it has no '{WIDTH_PROBE}' key")
    return int(state[WIDTH_PROBE].shape[0]) / 32.0


def generator_from_state(state: Mapping[str, torch.Tensor], source: str) -> Generator:
    """A generator in eval mode holding ``state``; its width is read from the shapes."""
    state = dict(state)
    net = Generator(GeneratorConfig(width=generator_width(state)))
    load_strict(net, state, source)
    return net.eval()


def audio_encoder_from_state(state: Mapping[str, torch.Tensor], source: str) -> AudioEncoder:
    """The AVE audio encoder in eval mode; keys with or without the module prefix."""
    state = {
        (k if k.startswith(_ENCODER_PREFIX) else _ENCODER_PREFIX + k): v for k, v in state.items()
    }
    net = AudioEncoder()
    load_strict(net, state, source)
    return net.eval()


def load_generator(path: str | Path) -> Generator:
    """A generator in eval mode from a SyncTalk_2D (or lipstream) checkpoint; width inferred."""
    return generator_from_state(read_state_dict(path), str(path))


def load_audio_encoder(path: str | Path) -> AudioEncoder:
    """The AVE audio encoder in eval mode; accepts keys with or without the module prefix."""
    return audio_encoder_from_state(read_state_dict(path), str(path))
