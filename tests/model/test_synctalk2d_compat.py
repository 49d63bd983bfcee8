"""lipstream's networks reproduce SyncTalk_2D's own outputs on its reference vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipstream.errors import CheckpointError
from lipstream.model.synctalk2d import load_audio_encoder, load_generator


def _weights(npz, strip_prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key in npz.files:
        if key.startswith("w/"):
            value = npz[key]
            value = value.astype(np.float32) if value.dtype == np.float16 else value
            out[key[2:].removeprefix(strip_prefix)] = torch.from_numpy(value)
    return out


@pytest.fixture(scope="module")
def generator_ckpt(synctalk2d_vectors, tmp_path_factory):
    npz = np.load(synctalk2d_vectors / "synctalk2d_unet328_ave.npz")
    path = tmp_path_factory.mktemp("ckpt") / "199.pth"
    torch.save(_weights(npz), path)  # a checkpoint as SyncTalk_2D's training writes it
    return path, npz


def test_generator_checkpoint_reproduces_reference_output(generator_ckpt):
    path, npz = generator_ckpt
    net = load_generator(path)
    assert sum(p.numel() for p in net.parameters()) == 12186935
    with torch.no_grad():
        out = net(torch.from_numpy(npz["img"]), torch.from_numpy(npz["audio"])).numpy()
    assert out.shape == (1, 3, 320, 320)
    np.testing.assert_allclose(out, npz["out"], atol=1e-4, rtol=0)


def test_audio_encoder_checkpoint_without_prefix_reproduces_reference(synctalk2d_vectors, tmp_path):
    npz = np.load(synctalk2d_vectors / "synctalk2d_ave_encoder.npz")
    path = tmp_path / "audio_visual_encoder.pth"
    torch.save(_weights(npz, strip_prefix="audio_encoder."), path)  # file keys carry no prefix
    net = load_audio_encoder(path)
    with torch.no_grad():
        out = net(torch.from_numpy(npz["mel"])).numpy()
    assert out.shape == (3, 512)
    np.testing.assert_allclose(out, npz["out"], atol=1e-4, rtol=0)


def test_checkpoint_with_wrong_keys_names_them(generator_ckpt, tmp_path):
    path, _ = generator_ckpt
    state = torch.load(path, weights_only=True)
    state["outc.conv.extra"] = state.pop("outc.conv.bias")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=r"missing key\(s\): outc\.conv\.bias") as err:
        load_generator(bad)
    assert "outc.conv.extra" in str(err.value)


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path):
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_generator(bad)


def test_narrow_generator_keeps_interface_and_loads_its_own_width(tmp_path):
    from lipstream.model.network import Generator, GeneratorConfig

    net = Generator(GeneratorConfig(width=0.25)).eval()
    path = tmp_path / "narrow.pth"
    torch.save(net.state_dict(), path)
    loaded = load_generator(path)
    assert loaded.cfg.width == 0.25
    with torch.no_grad():
        out = loaded(torch.rand(2, 6, 320, 320), torch.rand(2, 32, 16, 16))
    assert out.shape == (2, 3, 320, 320)
    assert float(out.min()) > 0.0 and float(out.max()) < 1.0
