"""Judging a finished model package on a dataset's held-out frames, and a contact sheet of them.

``lipstream evaluate PACKAGE --dataset DIR`` runs the measurements training ends with
(``lipstream.avatar.evaluate.evaluate``: mouth PSNR and SSIM with the frame's own and another
frame's reference, and the mouth-opening correlation on the latter) on the last 10% of a
dataset's frames, with the package's own feature layout, and the same image metrics on the
lips' own box, found from the dataset's landmarks (``lips_region``). It serves to compare
packages trained on the same dataset, e.g. the same avatar at different lookaheads
(docs/latency.md).

A package with PyTorch weights is measured with them. A serving-only package (ONNX) is measured
with its fp32 graph cut down to the network itself (its ``image`` and ``audio`` inputs, its
``out`` output): the same arithmetic, without the graph's crop-to-input steps, so that the
reference can come from another frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from lipstream.avatar.evaluate import (
    MOUTH_COLS,
    MOUTH_ROWS,
    OpeningMeasure,
    Region,
    cross_references,
    default_opening_measure,
    evaluate,
    generate,
)
from lipstream.avatar.training_data import load_training_data
from lipstream.errors import InvalidInput, PackageError
from lipstream.geometry import CROP_SIZE, INNER_OFFSET, NETWORK_SIZE, CropBox, inner
from lipstream.model.package import ModelPackage, load_package
from lipstream.video import read_video_frames

HELD_OUT_FRACTION = 0.1  # training's default: the frames a package trained here never saw
OUTER_LIPS = slice(48, 60)  # the outer lip contour among the 68 face landmarks
LIPS_MARGIN = 0.25  # of the lips' width and height, added on each side of their box
_NETWORK_INPUTS = ["image", "audio"]
_NETWORK_OUTPUT = "out"


class _OnnxModule:
    """An ONNX Runtime session called like the torch module it was exported from."""

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._names = list(names)

    def eval(self) -> _OnnxModule:
        return self

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
            for name, x in zip(self._names, inputs, strict=True)
        }
        return torch.from_numpy(self._session.run(None, feed)[0])


def package_networks(package: ModelPackage, work_dir: Path) -> tuple[object, object]:
    """(generator, audio encoder) of a package as callables ``evaluate`` can drive."""
    generator_path = package.weights("pytorch.generator")
    encoder_path = package.weights("pytorch.audio_encoder")
    if generator_path is not None and encoder_path is not None:
        from lipstream.model.synctalk2d import load_audio_encoder, load_generator

        return load_generator(generator_path), load_audio_encoder(encoder_path)
    graph = package.weights("onnx.generator_fp32")
    encoder_graph = package.weights("onnx.audio_encoder")
    if graph is None or encoder_graph is None:
        raise PackageError(
            f"model package {package.name} has neither PyTorch weights nor the ONNX fp32 "
            "generator and audio encoder that evaluation needs"
        )
    import onnx.utils

    network = work_dir / "network.onnx"
    try:
        onnx.utils.extract_model(str(graph), str(network), _NETWORK_INPUTS, [_NETWORK_OUTPUT])
    except Exception as exc:  # a graph exported otherwise: say which tensors were looked for
        raise PackageError(
            f"{graph} has no 'image' -> 'out' network inside it to evaluate ({exc})"
        ) from None
    encoder_input = load_package_input_name(encoder_graph)
    return _OnnxModule(network, _NETWORK_INPUTS), _OnnxModule(encoder_graph, [encoder_input])


def load_package_input_name(path: Path) -> str:
    """The name of an ONNX graph's only input."""
    import onnx

    inputs = onnx.load(str(path), load_external_data=False).graph.input
    if len(inputs) != 1:
        raise PackageError(f"{path} should take one input, it takes {len(inputs)}")
    return inputs[0].name


def evaluate_package(
    package_dir: str | Path,
    dataset_dir: str | Path,
    *,
    measure_opening: OpeningMeasure | None = None,
    contact_sheet: str | Path | None = None,
) -> dict[str, float]:
    """The package's metrics on the dataset's held-out tail; optionally a contact sheet."""
    package = load_package(package_dir)
    data = load_training_data(dataset_dir, package.layout)
    _, held = data.split(HELD_OUT_FRACTION)
    frames = list(held)
    if len(frames) < 2:
        raise InvalidInput(f"dataset {data.path} holds too few frames to keep some out")
    if measure_opening is None:
        measure_opening = default_opening_measure()
    full_frames = None
    if measure_opening is not None:
        wanted = set(frames)
        full_frames = [f for i, f in enumerate(read_video_frames(data.video_path)) if i in wanted]
    boxes = [data.box(i) for i in frames]
    lips = lips_region(data.landmarks[frames], boxes)
    mel = torch.from_numpy(data.mel_windows)
    with tempfile.TemporaryDirectory(prefix="lipstream-evaluate-") as tmp:
        generator, encoder = package_networks(package, Path(tmp))
        with torch.no_grad():
            metrics = evaluate(
                generator,  # type: ignore[arg-type]
                encoder,  # type: ignore[arg-type]
                data.crops,
                mel,
                frames,
                boxes=boxes,
                full_frames=full_frames,
                measure_opening=measure_opening,
                layout=package.layout,
                lips=lips,
            )
            if contact_sheet is not None:
                picks = sheet_frames(frames)
                cross = cross_references(frames)
                references = [cross[frames.index(i)] for i in picks]
                made = generate(
                    generator,  # type: ignore[arg-type]
                    encoder,  # type: ignore[arg-type]
                    data.crops,
                    mel,
                    picks,
                    references=references,
                    layout=package.layout,
                )
                write_contact_sheet(contact_sheet, inner(data.crops[picks]), made, lips)
    metrics["lookahead_ms"] = package.lookahead_ms
    return metrics


def sheet_frames(frames: Sequence[int], count: int = 10) -> list[int]:
    """``count`` consecutive held-out frames from the middle of the tail (a few syllables)."""
    middle = len(frames) // 2
    return list(frames[middle : middle + count])


def lips_region(landmarks: np.ndarray, boxes: Sequence[CropBox]) -> Region:
    """The lips' box in the 320x320 network region: each frame's outer lip contour
    (``landmarks``: float [N, 68, 2] in video pixels) mapped through its crop ``box``, the
    median box over the frames, widened by ``LIPS_MARGIN`` on each side."""
    if len(landmarks) != len(boxes) or len(boxes) == 0:
        raise InvalidInput(
            f"landmarks for {len(landmarks)} frames do not match {len(boxes)} crop boxes"
        )
    corners = []
    for points, box in zip(landmarks, boxes, strict=True):
        lips = points[OUTER_LIPS]
        scale = np.array([CROP_SIZE / box.width, CROP_SIZE / box.height])
        mapped = (lips - [box.xmin, box.ymin]) * scale - INNER_OFFSET
        corners.append([*mapped.min(axis=0), *mapped.max(axis=0)])
    x0, y0, x1, y1 = np.median(np.asarray(corners), axis=0)
    dx, dy = (x1 - x0) * LIPS_MARGIN, (y1 - y0) * LIPS_MARGIN
    rows = slice(max(int(y0 - dy), 0), min(int(np.ceil(y1 + dy)), NETWORK_SIZE))
    cols = slice(max(int(x0 - dx), 0), min(int(np.ceil(x1 + dx)), NETWORK_SIZE))
    if rows.stop - rows.start < 2 or cols.stop - cols.start < 2:
        raise InvalidInput(f"the lips' landmarks fall outside the crops (rows {rows}, cols {cols})")
    return rows, cols


def write_contact_sheet(
    path: str | Path, real: np.ndarray, made: np.ndarray, lips: Region | None = None
) -> Path:
    """A JPEG of mouths: the real ones on top, the generated ones below. Each shows ``lips``
    (the lips' box) at full size, or else the mouth region (``MOUTH_ROWS`` x ``MOUTH_COLS``)
    at half size."""
    rows_cols = lips if lips is not None else (MOUTH_ROWS, MOUTH_COLS)
    rows = []
    for regions in (real, made):
        mouths = [np.ascontiguousarray(r[rows_cols]) for r in regions]
        rows.append(np.concatenate(mouths, axis=1))
    sheet = np.concatenate(rows, axis=0)
    if lips is None:
        size = (sheet.shape[1] // 2, sheet.shape[0] // 2)
        sheet = cv2.resize(sheet, size, interpolation=cv2.INTER_AREA)
    out = Path(path)
    if not cv2.imwrite(str(out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise InvalidInput(f"could not write the contact sheet {out} (is it a .jpg path?)")
    return out
