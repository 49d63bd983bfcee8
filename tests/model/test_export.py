"""The ONNX exports compute what the PyTorch networks compute."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lipstream.bench import random_generator_state, synthetic_audio, synthetic_crops
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.export import (
    export_audio_encoder,
    export_generator,
    export_generator_network,
    get_metadata,
    inference_mask,
    network_input,
    pad_channels,
)
from lipstream.model.network import Generator, GeneratorConfig
from lipstream.model.quantize import QuantizeOptions, quantize_generator


def _generator(width: float) -> Generator:
    net = Generator(GeneratorConfig(width=width))
    net.load_state_dict(random_generator_state(width))
    return net.eval()


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("width", [1.0, 0.25])
def test_network_export_matches_pytorch(width, tmp_path):
    net = _generator(width)
    path = export_generator_network(net, tmp_path / "network.onnx")
    rng = np.random.default_rng(0)
    image = rng.random((2, 6, 320, 320), dtype=np.float32)
    audio = rng.standard_normal((2, 32, 16, 16), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(image), torch.from_numpy(audio)).numpy()
    out = _session(path).run(["out"], {"image": image, "audio": audio})[0]
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
    if width != 1.0:
        # the padded graph adds only zero channels, so it computes the same numbers
        padded = tmp_path / "padded.onnx"
        onnx.save(pad_channels(onnx.load(str(path))), str(padded))
        out_padded = _session(padded).run(["out"], {"image": image, "audio": audio})[0]
        np.testing.assert_allclose(out_padded, expected, atol=1e-4, rtol=0)
    assert get_metadata(onnx.load(str(path)))["lipstream.width"] == str(width)


def test_generate_graph_follows_synctalk2d_conventions(tmp_path):
    net = _generator(0.25)
    path = export_generator(net, tmp_path / "generate.onnx")
    crops = synthetic_crops(3)
    audio = synthetic_audio(3)
    mouths = _session(path).run(["mouths"], {"crops": crops, "audio": audio})[0]
    assert mouths.shape == (3, 320, 320, 3) and mouths.dtype == np.uint8

    # reference: the 6-channel input and the uint8 output exactly as SyncTalk_2D's loop makes them
    image = crops.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    masked = image.copy()
    masked[:, :, 5:310, 5:315] = 0
    with torch.no_grad():
        out = net(torch.from_numpy(np.concatenate([image, masked], 1)), torch.from_numpy(audio))
    expected = (out.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    diff = np.abs(mouths.astype(int) - expected.astype(int))
    # float rounding may tip a value across an integer before truncation: one level, rarely
    assert diff.max() <= 1
    assert (diff > 0).mean() < 1e-3


def test_mask_and_network_input_match_synctalk2d():
    keep = inference_mask()
    assert keep[5:310, 5:315].sum() == 0
    assert keep.sum() == 320 * 320 - 305 * 310
    assert keep[4, 100] == 1 and keep[310, 100] == 1 and keep[100, 315] == 1
    x = network_input(synthetic_crops(1))
    assert x.shape == (1, 6, 320, 320) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 3:], x[:, :3] * keep)


def test_audio_encoder_export_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    net = AudioEncoder().eval()
    path = export_audio_encoder(net, tmp_path / "audio_encoder.onnx")
    mel = np.random.default_rng(0).uniform(-4, 4, (3, 1, 80, 16)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(mel)).numpy()
    out = _session(path).run(["features"], {"mel": mel})[0]
    assert out.shape == (3, 512)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_int8_generate_graph_runs_and_is_marked(tmp_path):
    net = _generator(0.25)
    network = export_generator_network(net, tmp_path / "network.onnx")
    crops, audio = synthetic_crops(4), synthetic_audio(4)
    path = quantize_generator(
        network, tmp_path / "int8.onnx", crops, audio, QuantizeOptions(calibration_samples=4)
    )
    model = onnx.load(str(path))
    assert get_metadata(model)["lipstream.precision"] == "int8"
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    mouths = _session(path).run(["mouths"], {"crops": crops[:2], "audio": audio[:2]})[0]
    assert mouths.shape == (2, 320, 320, 3) and mouths.dtype == np.uint8


def test_int8_graph_takes_the_uint8_image_and_copies_upsampled_concat_inputs(tmp_path):
    net = _generator(0.25)
    network = export_generator_network(net, tmp_path / "network.onnx")
    crops, audio = synthetic_crops(4), synthetic_audio(4)
    path = quantize_generator(
        network, tmp_path / "int8.onnx", crops, audio, QuantizeOptions(calibration_samples=4)
    )
    graph = onnx.load(str(path)).graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    # the uint8 image goes straight to its DequantizeLinear, with the lossless scale 1/255
    image_dq = next(n for n in graph.node if "generate/image_u8" in n.input)
    assert image_dq.op_type == "DequantizeLinear"
    assert inits[image_dq.input[1]] == np.float32(1 / 255) and inits[image_dq.input[2]] == 0
    assert not any(n.op_type in ("Cast", "Div") and "image" in n.output[0] for n in graph.node)
    # a Resize output feeding a Concat is quantized with the Concat's own scale
    checked = 0
    for resize in (n for n in graph.node if n.op_type == "Resize"):
        q = next(n for n in graph.node if resize.output[0] in n.input)
        dq = next(n for n in graph.node if q.output[0] in n.input)
        concat = next(n for n in graph.node if dq.output[0] in n.input)
        if concat.op_type != "Concat":
            continue  # merged into an Add by the channel padding
        out_q = next(n for n in graph.node if concat.output[0] in n.input)
        assert q.input[1:3] == out_q.input[1:3] == dq.input[1:3]
        checked += 1
    assert checked


def test_generate_graph_preprocessing_is_exact_in_uint8(tmp_path):
    net = _generator(0.25)
    path = export_generator(net, tmp_path / "generate.onnx")
    probe = onnx.load(str(path))
    # expose the float network input to compare it with SyncTalk_2D's preprocessing
    probe.graph.output.append(
        onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, None)
    )
    crops = synthetic_crops(2)
    image = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["image"], {"crops": crops, "audio": synthetic_audio(2)}
    )[0]
    np.testing.assert_array_equal(image, network_input(crops))
