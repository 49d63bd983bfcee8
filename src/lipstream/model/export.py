"""Exporting the networks to ONNX, the format the serving runtimes load.

Three artifacts, one function each:

- ``export_generator_network``: the float generator as it is, ``(image [N,6,320,320],
  audio [N,32,16,16]) -> out [N,3,320,320]`` in (0, 1). Used to check the export against PyTorch
  and as the input of int8 quantization.
- ``export_generator``: the "whole generate" graph the runtimes serve. It takes the avatar's
  uint8 inner crops ``[N,320,320,3]`` (BGR) and the audio features, and does SyncTalk_2D's
  pre- and post-processing itself (scale by 1/255, the masked copy, the 6-channel concat, output
  times 255 truncated to uint8, HWC), so one generate call is one ``session.run``.
- ``export_audio_encoder``: mel windows ``[N,1,80,16] -> [N,512]``.

``wrap_generate`` turns any float-IO generator graph (fp32 or quantized) into the whole-generate
form; ``pad_channels`` is an exact rewrite that makes every channel count a multiple of the CPU's
vector block, so ONNX Runtime's blocked layout needs no reorders between layers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lipstream.audio.timeline import FRAME_FEATURE_SHAPE
from lipstream.geometry import MASK
from lipstream.geometry import NETWORK_SIZE as IMAGE_SIZE

OPSET = 17

# Names of the graph inputs and outputs every runtime relies on.
CROPS = "crops"
AUDIO = "audio"
MOUTHS = "mouths"
NETWORK_IMAGE = "image"
NETWORK_OUT = "out"
MEL = "mel"
FEATURES = "features"

# Metadata keys written into the exported models.
META_KIND = "lipstream.kind"
META_WIDTH = "lipstream.width"
META_PRECISION = "lipstream.precision"


def inference_mask() -> np.ndarray:
    """1 where the masked copy keeps the crop, 0 inside the mask rectangle; float32 [320,320]."""
    keep = np.ones((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    keep[MASK.rows, MASK.cols] = 0.0
    return keep


def network_input(crops320: np.ndarray) -> np.ndarray:
    """SyncTalk_2D's 6-channel input for uint8 BGR crops [N,320,320,3]: float32 [N,6,320,320]."""
    x = crops320.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    return np.concatenate([x, x * inference_mask()], axis=1)


def set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Write ``values`` into the model's metadata, replacing keys already present."""
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=str(value))


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def _torch_export(module, args, path: Path, inputs: list[str], outputs: list[str]) -> None:
    import torch

    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter takes ~4x less time than the torch.export one for this
        # network and writes the same operators (BatchNorm folded into Conv in eval mode).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _width_of(generator) -> float:
    return float(generator.cfg.width)


def export_generator_network(generator, path: str | Path) -> Path:
    """Export the float generator: ``image [N,6,320,320], audio [N,32,16,16] -> out [N,3,...]``."""
    import torch

    path = Path(path)
    net = generator.eval()
    example = (torch.rand(1, 6, IMAGE_SIZE, IMAGE_SIZE), torch.rand(1, *FRAME_FEATURE_SHAPE))
    _torch_export(net, example, path, [NETWORK_IMAGE, AUDIO], [NETWORK_OUT])
    model = onnx.load(str(path))
    _drop_identities(model)
    set_metadata(
        model, {META_KIND: "network", META_WIDTH: str(_width_of(net)), META_PRECISION: "fp32"}
    )
    onnx.save(model, str(path))
    return path


def export_generator(generator, path: str | Path, *, pad: bool = True) -> Path:
    """Export the whole-generate fp32 graph: ``crops uint8 [N,320,320,3], audio -> mouths uint8``.

    ``pad`` applies :func:`pad_channels` (exact; it only adds zero channels), which removes the
    layout reorders ONNX Runtime otherwise inserts around channel counts that are not a multiple
    of 16.
    """
    path = Path(path)
    export_generator_network(generator, path)
    model = onnx.load(str(path))
    if pad:
        model = pad_channels(model)
    model = wrap_generate(model)
    onnx.save(model, str(path))
    return path


def export_audio_encoder(encoder, path: str | Path) -> Path:
    """Export the AVE audio encoder: ``mel [N,1,80,16] -> features [N,512]``."""
    import torch

    path = Path(path)
    _torch_export(encoder.eval(), (torch.rand(2, 1, 80, 16),), path, [MEL], [FEATURES])
    model = onnx.load(str(path))
    _drop_identities(model)
    set_metadata(model, {META_KIND: "audio_encoder", META_PRECISION: "fp32"})
    onnx.save(model, str(path))
    return path


def _drop_identities(model: onnx.ModelProto) -> None:
    """Remove Identity nodes (the exporter emits them for shared constants) by renaming uses."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(kept)


def wrap_generate(network: onnx.ModelProto) -> onnx.ModelProto:
    """Turn a float-IO generator graph into the whole-generate graph (uint8 HWC in and out).

    Works on the fp32 network and on its QDQ-quantized form alike: the network's ``image``
    input becomes an inner tensor made from ``crops``, and its ``out`` output feeds the uint8
    post-processing.
    """
    model = onnx.ModelProto()
    model.CopyFrom(network)
    graph = model.graph
    names = {i.name for i in graph.input}
    if NETWORK_IMAGE not in names or NETWORK_OUT not in {o.name for o in graph.output}:
        raise ValueError("not a generator network graph: expected input 'image' and output 'out'")

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, f"generate/{name}"))
        return f"generate/{name}"

    # The mask is stored for all three channels: ONNX Runtime moves this arithmetic to HWC order
    # for the int8 kernels, where a mask broadcast over the innermost axis runs 10x slower.
    keep = const("keep", np.repeat(inference_mask()[None, None], 3, axis=1).astype(np.uint8))
    inv255 = const("d255", np.array(255.0, np.float32))
    to255 = const("times255", np.array(255.0, np.float32))
    # Masking and the 6-channel concat run on uint8, a quarter of the bytes of float; the result
    # equals SyncTalk_2D's float order exactly, since the mask only multiplies by 0 or 1.
    pre = [
        helper.make_node("Transpose", [CROPS], ["generate/chw_u8"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["generate/chw_u8", keep], ["generate/masked_u8"]),
        helper.make_node(
            "Concat", ["generate/chw_u8", "generate/masked_u8"], ["generate/image_u8"], axis=1
        ),
    ]
    image_q = _exact_image_quantizer(graph)
    if image_q is not None:
        # The int8 network quantizes its input with scale 1/255 and zero point 0: the quantized
        # image is the uint8 image itself, so the float round trip is skipped.
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == image_q.output[0]:
                    node.input[i] = "generate/image_u8"
        graph.node.remove(image_q)
    else:
        pre += [
            helper.make_node(
                "Cast", ["generate/image_u8"], ["generate/image_f"], to=TensorProto.FLOAT
            ),
            helper.make_node("Div", ["generate/image_f", inv255], [NETWORK_IMAGE]),
        ]
    post = [
        helper.make_node("Mul", [NETWORK_OUT, to255], ["generate/scaled"]),
        # Cast truncates toward zero, like numpy's astype(uint8) in SyncTalk_2D's loop.
        helper.make_node("Cast", ["generate/scaled"], ["generate/chw_out"], to=TensorProto.UINT8),
        helper.make_node("Transpose", ["generate/chw_out"], [MOUTHS], perm=[0, 2, 3, 1]),
    ]
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(pre + body + post)

    audio = next(i for i in graph.input if i.name == AUDIO)
    audio_copy = onnx.ValueInfoProto()
    audio_copy.CopyFrom(audio)
    del graph.input[:]
    graph.input.extend(
        [
            helper.make_tensor_value_info(
                CROPS, TensorProto.UINT8, ["batch", IMAGE_SIZE, IMAGE_SIZE, 3]
            ),
            audio_copy,
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(
                MOUTHS, TensorProto.UINT8, ["batch", IMAGE_SIZE, IMAGE_SIZE, 3]
            )
        ]
    )
    used = {n for node in graph.node for n in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    meta = get_metadata(network)
    meta[META_KIND] = "generate"
    set_metadata(model, meta)
    return model


def _exact_image_quantizer(graph: onnx.GraphProto) -> onnx.NodeProto | None:
    """The QuantizeLinear of the ``image`` input if it maps x/255 back to the uint8 x exactly.

    That holds for scale 1/255 (as float32) and zero point 0 of type uint8: the quotient
    (x/255) / (1/255) lies within a few float roundings of the integer x.
    """
    users = [n for n in graph.node if NETWORK_IMAGE in n.input]
    if len(users) != 1 or users[0].op_type != "QuantizeLinear" or len(users[0].input) < 3:
        return None
    inits = {t.name: t for t in graph.initializer}
    scale, zero = (inits.get(name) for name in users[0].input[1:3])
    if scale is None or zero is None or zero.data_type != TensorProto.UINT8:
        return None
    s, z = numpy_helper.to_array(scale), numpy_helper.to_array(zero)
    if s.size != 1 or z.size != 1 or s.item() != np.float32(1.0 / 255.0) or z.item() != 0:
        return None
    return users[0]


# --------------------------------------------------------------------------------------------
# Channel padding: an exact rewrite for ONNX Runtime's blocked (NCHWc) CPU layout.


def pad_channels(model: onnx.ModelProto, block: int = 16, merge: bool = True) -> onnx.ModelProto:
    """Round every inner channel count up to a multiple of ``block`` with zero channels.

    ONNX Runtime's CPU kernels compute convolutions in a blocked layout of 16 channels (8 on
    AVX2 machines) and insert a reorder to and from plain NCHW around each tensor whose channel
    count is not a multiple of it. In the narrow generators (4, 8, 12 channels at full
    resolution) those reorders cost a third of the run. Zero-padding the weights removes them
    and changes no output value: a padded channel has zero weights and zero bias, so it holds
    zeros through ReLU, residual adds, resizes and concats, and every consumer gives it zero
    weight.

    With ``merge``, a channel Concat whose inputs fit together in one padded block (say 8 + 8
    channels) becomes an Add: the producers place their real channels at disjoint positions of
    the same block, zeros elsewhere, so the sum is the concatenation, in half the bytes.

    The graph must hold only Conv (plain or depthwise), Relu, Add, Concat (on channels), Resize
    and Sigmoid between its inputs and outputs, which is what the generator exports to.
    Graph inputs and outputs keep their channel counts.
    """
    model_out = onnx.ModelProto()
    model_out.CopyFrom(model)
    graph = model_out.graph
    inits = {t.name: t for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    # layout[name] = padded position of each real channel, plus the padded channel count.
    layouts: dict[str, tuple[np.ndarray, int]] = {}
    for inp in graph.input:
        c = inp.type.tensor_type.shape.dim[1].dim_value
        layouts[inp.name] = (np.arange(c), c)

    def padded(c: int) -> int:
        return int(math.ceil(c / block) * block)

    # An Add needs both operands in one layout: record which tensors meet in an Add, so the conv
    # producing the later one can adopt the layout of the earlier one.
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    wanted, merged = _plan_merges(graph, inits, padded) if merge else ({}, set())

    def replace_init(name: str, value: np.ndarray) -> str:
        # one copy per consumer: the exporter shares equal constants (zero biases) between convs
        new = f"{name}/padded{len(graph.initializer)}"
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), new))
        return new

    for node in graph.node:
        op = node.op_type
        if op == "Conv":
            x_layout, x_total = layouts[node.input[0]]
            w = numpy_helper.to_array(inits[node.input[1]])
            b = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            cout = w.shape[0]
            if _reaches_output(node.output[0], consumers, graph_outputs):
                out_layout, out_total = np.arange(cout), cout
            elif node.output[0] in wanted:
                offset, out_total = wanted[node.output[0]]
                out_layout = offset + np.arange(cout)
            else:
                out_layout, out_total = _conv_out_layout(node, cout, padded, layouts, consumers)
            if group == 1:
                wp = np.zeros((out_total, x_total, *w.shape[2:]), np.float32)
                wp[np.ix_(out_layout, x_layout)] = w
            elif group == w.shape[0] and w.shape[1] == 1 and group == len(x_layout):
                # depthwise: channel i of the output is channel i of the input
                out_layout, out_total = x_layout, x_total
                wp = np.zeros((out_total, 1, *w.shape[2:]), np.float32)
                wp[out_layout] = w
                for a in node.attribute:
                    if a.name == "group":
                        a.i = out_total
            else:
                raise ValueError(f"pad_channels: unsupported grouped Conv {node.name}")
            node.input[1] = replace_init(node.input[1], wp)
            if b is not None:
                bp = np.zeros(out_total, np.float32)
                bp[out_layout] = b
                node.input[2] = replace_init(node.input[2], bp)
            layouts[node.output[0]] = (out_layout, out_total)
        elif op == "Constant":
            continue
        elif op in ("Relu", "Sigmoid", "Resize"):
            layouts[node.output[0]] = layouts[node.input[0]]
        elif op == "Add":
            left, right = (layouts[n] for n in node.input)
            if left[1] != right[1] or not np.array_equal(left[0], right[0]):
                raise ValueError(f"pad_channels: operands of {node.name} differ in layout")
            layouts[node.output[0]] = left
        elif op == "Concat" and node.name in merged:
            parts = [layouts[n] for n in node.input]
            positions = np.concatenate([lay for lay, _ in parts])
            if len(set(positions.tolist())) != len(positions) or parts[0][1] != parts[1][1]:
                raise ValueError(f"pad_channels: cannot merge {node.name}")
            node.op_type = "Add"
            del node.attribute[:]
            layouts[node.output[0]] = (positions, parts[0][1])
        elif op == "Concat":
            axis = next(a.i for a in node.attribute if a.name == "axis")
            if axis != 1:
                raise ValueError(f"pad_channels: Concat {node.name} is not on channels")
            pieces, offset = [], 0
            for name in node.input:
                lay, total = layouts[name]
                pieces.append(lay + offset)
                offset += total
            layouts[node.output[0]] = (np.concatenate(pieces), offset)
        else:
            raise ValueError(f"pad_channels: unsupported operator {op} ({node.name})")
        if node.output[0] in graph_outputs:
            lay, total = layouts[node.output[0]]
            if total != len(lay):
                raise ValueError(f"pad_channels: graph output {node.output[0]} would be padded")
    used = {n for node in graph.node for n in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return model_out


def _plan_merges(graph: onnx.GraphProto, inits, padded) -> tuple[dict[str, tuple[int, int]], set]:
    """Which two-input channel Concats can become Adds, and the layouts that requires.

    Returns ``wanted`` (tensor -> (first padded position of its real channels, padded count))
    and the names of the Concats to merge. A wish travels from a Concat input back through
    ReLU, Resize, residual Add and depthwise Conv to the pointwise Conv that makes the tensor;
    a Concat is merged only if every tensor on the way can take its wish without conflict.
    """
    producer = {o: n for n in graph.node for o in n.output}
    counts: dict[str, int] = {
        i.name: i.type.tensor_type.shape.dim[1].dim_value for i in graph.input
    }
    for node in graph.node:
        if node.op_type == "Conv":
            counts[node.output[0]] = int(inits[node.input[1]].dims[0])
        elif node.op_type in ("Relu", "Add", "Resize", "Sigmoid") and node.input[0] in counts:
            counts[node.output[0]] = counts[node.input[0]]
        elif node.op_type == "Concat" and all(n in counts for n in node.input):
            counts[node.output[0]] = sum(counts[n] for n in node.input)

    wanted: dict[str, tuple[int, int]] = {}
    merged: set[str] = set()

    def want(name: str, wish: tuple[int, int], trial: dict[str, tuple[int, int]]) -> bool:
        known = trial.get(name, wanted.get(name))
        if known is not None:
            return known == wish
        node = producer.get(name)
        if node is None:  # a graph input keeps its layout
            return False
        trial[name] = wish
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            return group == 1 or want(node.input[0], wish, trial)
        if node.op_type in ("Relu", "Resize"):
            return want(node.input[0], wish, trial)
        if node.op_type == "Add":
            return all(want(n, wish, trial) for n in node.input)
        return False

    for node in graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if node.op_type != "Concat" or axis != 1 or len(node.input) != 2:
            continue
        first, second = node.input
        if first not in counts or second not in counts:
            continue
        ca, cb = counts[first], counts[second]
        total = padded(ca + cb)
        if total >= padded(ca) + padded(cb):
            continue
        trial: dict[str, tuple[int, int]] = {}
        if want(first, (0, total), trial) and want(second, (ca, total), trial):
            wanted.update(trial)
            merged.add(node.name)
    return wanted, merged


def _reaches_output(name: str, consumers, graph_outputs: set[str]) -> bool:
    """Whether ``name`` is a graph output or feeds one through elementwise activations only."""
    while name not in graph_outputs:
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type not in ("Relu", "Sigmoid"):
            return False
        name = users[0].output[0]
    return True


def _conv_out_layout(node, cout, padded, layouts, consumers) -> tuple[np.ndarray, int]:
    """Canonical layout (real channels first), or the layout of the other operand of an Add."""
    for user in consumers.get(node.output[0], []):
        if user.op_type == "Add":
            other = next((n for n in user.input if n != node.output[0]), None)
            if other in layouts:
                return layouts[other]
    return np.arange(cout), padded(cout)
