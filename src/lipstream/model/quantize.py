"""Static int8 quantization of the exported generator, calibrated on an avatar's own frames.

The network graph from :func:`lipstream.model.export.export_generator_network` is quantized with
ONNX Runtime's static quantizer (QDQ format, per-channel int8 weights, uint8 activations by
default), calibrated on the 6-channel inputs made from the given crops and audio windows, then
wrapped into the whole-generate graph the runtimes serve.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from lipstream.audio.timeline import FRAME_FEATURE_SHAPE
from lipstream.errors import InvalidInput
from lipstream.model.export import (
    AUDIO,
    META_PRECISION,
    NETWORK_IMAGE,
    get_metadata,
    network_input,
    pad_channels,
    set_metadata,
    wrap_generate,
)


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize; the defaults are the measured best trade of speed against fidelity."""

    per_channel: bool = True
    # "u8" activations run ONNX Runtime's fastest x86 int8 kernels (u8 x s8 with VNNI).
    activations: str = "u8"
    quant_format: str = "qdq"  # or "qoperator"
    # Node-name prefixes kept in float, e.g. ("/inc/", "/outc/") if the first or last layers
    # prove too sensitive on a trained package. None by default: measured, it costs speed.
    keep_float: tuple[str, ...] = field(default_factory=tuple)
    # Zero-pad channel counts to multiples of 16 first (exact; helps the int8 depthwise kernels).
    pad: bool = True
    # At most this many (crop, audio) pairs are used for calibration.
    calibration_samples: int = 16


def _calibration_pairs(
    crops320: np.ndarray, audio_windows: np.ndarray, limit: int
) -> Iterator[dict[str, np.ndarray]]:
    count = min(limit, max(len(crops320), len(audio_windows)))
    # spread the samples over the whole clip rather than its first frames
    crop_idx = np.linspace(0, len(crops320) - 1, count).round().astype(int)
    audio_idx = np.linspace(0, len(audio_windows) - 1, count).round().astype(int)
    for c, a in zip(crop_idx, audio_idx, strict=True):
        yield {
            NETWORK_IMAGE: network_input(crops320[c : c + 1]),
            AUDIO: np.ascontiguousarray(audio_windows[a : a + 1], dtype=np.float32),
        }


def quantize_network(
    network_path: str | Path,
    out_path: str | Path,
    crops320: np.ndarray,
    audio_windows: np.ndarray,
    options: QuantizeOptions | None = None,
) -> Path:
    """Quantize a float network graph to int8 (float IO kept); returns ``out_path``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    opts = options or QuantizeOptions()
    _check_calibration(crops320, audio_windows)
    out_path = Path(out_path)
    model = onnx.load(str(network_path))
    if opts.pad:
        model = pad_channels(model)
    excluded = [
        n.name for n in model.graph.node if any(n.name.startswith(p) for p in opts.keep_float)
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = _calibration_pairs(crops320, audio_windows, opts.calibration_samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="lipstream-quant-") as tmp:
        src = Path(tmp) / "float.onnx"
        # ONNX Runtime's quant_pre_process is left out on purpose: measured, its output ran
        # 5-10% slower after quantization (and its symbolic shape pass fails on this graph).
        onnx.save(model, str(src))
        quantize_static(
            str(src),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ if opts.quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=opts.per_channel,
            activation_type=QuantType.QUInt8 if opts.activations == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            extra_options={
                # The image is k/255 for uint8 k: scale 1/255 stores it losslessly (calibration
                # would clip values brighter than the calibration crops), and lets the
                # whole-generate graph feed the uint8 crops to the first convolution directly.
                "TensorQuantOverrides": {
                    NETWORK_IMAGE: [
                        {
                            "scale": np.array(1.0 / 255.0, np.float32),
                            "zero_point": np.array(0, np.uint8),
                        }
                    ]
                }
            }
            if opts.activations == "u8"
            else {},
        )
    quantized = onnx.load(str(out_path))
    share_concat_scales(quantized)
    meta = get_metadata(model)
    meta[META_PRECISION] = "int8"
    set_metadata(quantized, meta)
    onnx.save(quantized, str(out_path))
    return out_path


def share_concat_scales(model: onnx.ModelProto) -> int:
    """Quantize each upsampled Concat input with the Concat's own scale; returns how many.

    In QDQ form an input of a channel Concat is quantized with its own scale, then ONNX
    Runtime's QLinearConcat requantizes it to the output scale through a lookup table, one
    pixel's channels at a time (channels-last), which is slow at 320x320. An input made by a
    Resize is used by that Concat only, so it can be quantized with the output scale at once:
    QLinearConcat then copies it, and the value is rounded once instead of twice.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    changed = 0
    for node in graph.node:
        out_users = users.get(node.output[0], [])
        if node.op_type != "Concat" or len(out_users) != 1:
            continue
        out_q = out_users[0]
        if out_q.op_type != "QuantizeLinear":
            continue
        for name in node.input:
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None else None
            if dq is None or q is None or dq.op_type != "DequantizeLinear":
                continue
            source = producer.get(q.input[0])
            if (
                q.op_type != "QuantizeLinear"
                or source is None
                or source.op_type != "Resize"
                or len(users[q.output[0]]) != 1
                or len(users[dq.output[0]]) != 1
            ):
                continue
            q.input[1], q.input[2] = out_q.input[1], out_q.input[2]
            dq.input[1], dq.input[2] = out_q.input[1], out_q.input[2]
            changed += 1
    return changed


def quantize_generator(
    network_path: str | Path,
    out_path: str | Path,
    crops320: np.ndarray,
    audio_windows: np.ndarray,
    options: QuantizeOptions | None = None,
) -> Path:
    """Quantize a float network graph and wrap it into the int8 whole-generate graph."""
    out_path = Path(out_path)
    quantize_network(network_path, out_path, crops320, audio_windows, options)
    onnx.save(wrap_generate(onnx.load(str(out_path))), str(out_path))
    return out_path


def _check_calibration(crops320: np.ndarray, audio_windows: np.ndarray) -> None:
    if (
        not isinstance(crops320, np.ndarray)
        or crops320.dtype != np.uint8
        or crops320.ndim != 4
        or crops320.shape[1:] != (320, 320, 3)
        or len(crops320) == 0
    ):
        raise InvalidInput("calibration crops must be a non-empty uint8 array [F,320,320,3]")
    if (
        not isinstance(audio_windows, np.ndarray)
        or audio_windows.ndim != 4
        or audio_windows.shape[1:] != FRAME_FEATURE_SHAPE
        or len(audio_windows) == 0
    ):
        raise InvalidInput("calibration audio must be a non-empty array [N,32,16,16]")
