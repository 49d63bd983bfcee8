"""What ``lipstream bench model`` times: every runtime of one generator, and the loop it beats.

``build_runtimes`` exports a generator's weights to the package's ONNX graphs (fp32, and int8
quantized on calibration frames) and builds each requested runtime on them. ``SyncTalk2dLoop``
is SyncTalk_2D's own inference loop (its ``inference_328.py``: one frame at a time, eager
PyTorch fp32 in NCHW, the input prepared in numpy), the baseline whose speed lipstream's
runtimes are compared with in the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lipstream.errors import InvalidInput
from lipstream.geometry import MASK

RUNTIMES = (
    "synctalk2d-eager",
    "torch",
    "onnx-fp32",
    "onnx-int8",
    "openvino-bf16",
    "openvino-int8",
)


class SyncTalk2dLoop:
    """SyncTalk_2D's own per-frame inference loop, as a runtime with ``generate``."""

    def __init__(self, net: Any, crops320: np.ndarray) -> None:
        import torch

        self._torch = torch
        self._net = net.eval()
        self._crops = crops320
        self.width = float(net.cfg.width)
        self.name = "synctalk2d-eager"

    def generate(self, frame_ids: Sequence[int], audio_windows: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = []
        for i, frame_id in enumerate(frame_ids):
            real = self._crops[frame_id].copy()
            masked = real.copy()
            masked[MASK.rows, MASK.cols] = 0  # cv2.rectangle(..., (0, 0, 0), -1) in the original
            real_t = torch.from_numpy(real.transpose(2, 0, 1).astype(np.float32) / 255.0)
            masked_t = torch.from_numpy(masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
            image = torch.cat([real_t, masked_t], dim=0)[None]
            audio = torch.from_numpy(audio_windows[i].reshape(32, 16, 16))[None]
            with torch.no_grad():
                pred = self._net(image, audio)[0]
            out.append(np.array(pred.numpy().transpose(1, 2, 0) * 255, dtype=np.uint8))
        return np.stack(out)


def build_runtimes(
    generator_state: Mapping[str, Any],
    crops320: np.ndarray,
    calibration_audio: np.ndarray,
    runtimes: Sequence[str],
    workdir: str | Path,
) -> list[Any]:
    """Export and construct the requested runtimes for one generator state_dict."""
    from lipstream.model.runtime import OnnxGenerator, TorchGenerator
    from lipstream.model.synctalk2d import generator_from_state

    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise InvalidInput(f"unknown runtime(s) {unknown}; choose from {list(RUNTIMES)}")
    workdir = Path(workdir)
    out: list[Any] = []
    net = generator_from_state(generator_state, "generator weights")
    tag = f"w{net.cfg.width:g}"
    if "synctalk2d-eager" in runtimes:
        out.append(SyncTalk2dLoop(generator_from_state(generator_state, "weights"), crops320))
    fp32_users = {"onnx-fp32", "openvino-bf16"} & set(runtimes)
    int8_users = {"onnx-int8", "openvino-int8"} & set(runtimes)
    if fp32_users or int8_users:
        from lipstream.model.export import export_generator, export_generator_network

        graphs = {}
        if fp32_users:
            graphs["fp32"] = export_generator(net, workdir / f"generate-fp32-{tag}.onnx")
        if int8_users:
            from lipstream.model.quantize import quantize_generator

            network = export_generator_network(net, workdir / f"network-{tag}.onnx")
            graphs["int8"] = quantize_generator(
                network, workdir / f"generate-int8-{tag}.onnx", crops320, calibration_audio
            )
        for name in ("onnx-fp32", "onnx-int8"):
            if name in runtimes:
                graph = graphs[name.removeprefix("onnx-")]
                out.append(OnnxGenerator(graph, crops320, providers="auto"))
        for name, graph_kind in (("openvino-bf16", "fp32"), ("openvino-int8", "int8")):
            if name in runtimes:
                from lipstream.model.openvino_runtime import OpenVinoGenerator

                precision = name.removeprefix("openvino-")
                out.append(OpenVinoGenerator(graphs[graph_kind], crops320, precision))
    if "torch" in runtimes:
        out.append(TorchGenerator(net, crops320, device="auto"))
    order = {name: i for i, name in enumerate(RUNTIMES)}
    out.sort(key=lambda r: order.get(family(r.name), 99))
    return out


def family(name: str) -> str:
    """The runtime a runtime object's ``name`` belongs to ("torch-fp32" -> "torch")."""
    return "torch" if name.startswith("torch") else name.removesuffix("-cuda")
