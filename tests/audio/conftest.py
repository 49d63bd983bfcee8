"""Fixtures for the audio tests: real speech and two encoders (a torch network and a stub)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def speech_npz(synctalk2d_vectors):
    """SyncTalk_2D's reference: 16 kHz speech ('pcm'), its mel and its first encoder windows."""
    return np.load(synctalk2d_vectors / "synctalk2d_mel.npz")


@pytest.fixture(scope="session")
def speech(speech_npz) -> np.ndarray:
    """5.3 s of real 16 kHz speech, int16."""
    return speech_npz["pcm"]


@pytest.fixture(scope="session")
def stub_encode():
    """A cheap deterministic encoder: a fixed random projection of the window, then tanh."""
    weights = np.random.default_rng(7).standard_normal((80 * 16, 512)).astype(np.float32) / 40

    def encode(windows: np.ndarray) -> np.ndarray:
        assert windows.dtype == np.float32 and windows.shape[1:] == (1, 80, 16)
        return np.tanh(windows.reshape(len(windows), -1) @ weights)

    return encode


@pytest.fixture(scope="session")
def torch_encode():
    """SyncTalk_2D's audio encoder architecture with random weights."""
    torch = pytest.importorskip("torch")
    from lipstream.audio import torch_encoder
    from lipstream.model.audio_encoder import AudioEncoder

    torch.manual_seed(0)
    return torch_encoder(AudioEncoder())
