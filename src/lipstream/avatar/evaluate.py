"""Generating an avatar's frames with trained networks, and measuring how good they are.

The generation path here is the one training uses too (``audio_features``, ``network_input``),
so what is measured is what was trained.

Metrics, all on frames never trained on:

- ``psnr_mouth_db`` / ``ssim_mouth``: PSNR and SSIM of the mouth region, the lower half of the
  mask rectangle (``MOUTH_ROWS`` x ``MOUTH_COLS`` of the 320x320 network region): the part that
  speech moves, where a blurred or wrong mouth shows. The reference channels are the frame's
  own crop, as at inference on the avatar's own video.
- ``psnr_inner_db``: PSNR of the whole 320x320 region the network replaces (same generation).
- ``psnr_mouth_cross_db`` / ``ssim_mouth_cross``: the mouth region again, generated with the
  reference taken from another held-out frame, so the real mouth is nowhere in the input: what
  the audio alone gives, as when new speech drives the avatar's idle video.
- ``sync_correlation``: Pearson correlation between the mouth opening measured on the
  cross-reference frames (pasted into the full-body frame) and on the real frames. 1 is perfect
  sync; near 0 means the mouth moves unrelated to the speech.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.errors import InvalidInput
from lipstream.geometry import MASK, NETWORK_SIZE, CropBox, inner, masked, paste_prediction
from lipstream.model.quality import psnr

MOUTH_ROWS = slice(MASK.y + MASK.height // 2, MASK.y + MASK.height)
"""Rows of the network region holding the mouth: the lower half of the mask rectangle."""
MOUTH_COLS = MASK.cols
"""Columns of the network region holding the mouth: those of the mask rectangle."""

Region = tuple[slice, slice]
"""(rows, columns) of the 320x320 network region."""

OpeningMeasure = Callable[[np.ndarray], float | None]
"""``measure(frame_bgr) -> mouth opening`` of a full-body frame, or None where no face is found."""

_MIN_SYNC_FRAMES = 3  # a correlation over fewer pairs means nothing


# --------------------------------------------------------------------------------------------
# The network inputs, shared with training


def window_rows(frames: Sequence[int], layout: FeatureLayout = SYNCTALK2D) -> np.ndarray:
    """The encoder window feeding each of a frame's 16 feature rows: int64 [B, 16], -1 = zero
    (rows before the start of the audio; see ``lipstream.audio.timeline``)."""
    return np.asarray([layout.rows(k) for k in frames], dtype=np.int64).reshape(-1, 16)


def audio_features(
    encoder: nn.Module,
    mel_windows: torch.Tensor,
    frames: Sequence[int],
    layout: FeatureLayout = SYNCTALK2D,
) -> torch.Tensor:
    """Generator audio input [B, 32, 16, 16] of ``frames`` from the mel windows [W, 1, 80, 16].

    Each window the batch needs is encoded once, so gradients reach the encoder through every
    row that uses it.
    """
    rows = window_rows(frames, layout)
    used = np.unique(rows[rows >= 0])
    index = torch.from_numpy(used).to(mel_windows.device)
    encoded = encoder(mel_windows.index_select(0, index))  # [U, 512]
    table = torch.cat([encoded.new_zeros(1, encoded.shape[1]), encoded])  # row 0: the zeros
    lookup = np.where(rows >= 0, np.searchsorted(used, rows) + 1, 0)
    picked = table[torch.from_numpy(lookup).to(encoded.device)]  # [B, 16, 512]
    return picked.reshape(len(frames), 32, 16, 16)


def network_input(reference: np.ndarray, current: np.ndarray, device: torch.device) -> torch.Tensor:
    """Generator image input [B, 6, 320, 320] in [0, 1] from uint8 BGR regions [B, 320, 320, 3].

    Channels 0-2: ``reference``; channels 3-5: ``current`` with the mask rectangle zeroed.
    """
    stacked = np.concatenate([reference, masked(current)], axis=-1)  # [B, 320, 320, 6]
    x = torch.from_numpy(np.ascontiguousarray(stacked)).to(device)
    # NHWC memory read as NCHW is exactly channels_last: no copy before the first conv
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(output: torch.Tensor) -> np.ndarray:
    """Generator output [B, 3, 320, 320] in (0, 1) -> uint8 [B, 320, 320, 3] (truncated, as at
    inference)."""
    return (output.detach().float() * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(
    generator: nn.Module,
    encoder: nn.Module,
    crops: np.ndarray,
    mel_windows: torch.Tensor,
    indices: Sequence[int],
    batch_size: int = 4,
    references: Sequence[int] | None = None,
    layout: FeatureLayout = SYNCTALK2D,
) -> np.ndarray:
    """Mouth regions uint8 [len(indices), 320, 320, 3] for frames ``indices``.

    ``crops`` are the dataset's uint8 [N, 328, 328, 3] crops. The reference channels are each
    frame's own crop (as at inference on the avatar's own video), or the crops of
    ``references``, one per index. Both networks are left in eval mode.
    """
    if references is not None and len(references) != len(indices):
        raise ValueError("references must hold one frame index per generated frame")
    generator.eval()
    encoder.eval()
    device = mel_windows.device
    regions = inner(crops)
    out = np.empty((len(indices), NETWORK_SIZE, NETWORK_SIZE, 3), dtype=np.uint8)
    for start in range(0, len(indices), batch_size):
        frames = list(indices[start : start + batch_size])
        refs = frames if references is None else list(references[start : start + batch_size])
        image = network_input(regions[refs], regions[frames], device)
        out[start : start + len(frames)] = to_uint8(
            generator(image, audio_features(encoder, mel_windows, frames, layout))
        )
    return out


def cross_references(indices: Sequence[int]) -> list[int]:
    """For each frame, the frame half the list away (cyclically): a reference whose mouth has
    nothing to do with the frame's audio, as when the avatar's idle video meets new speech."""
    half = max(len(indices) // 2, 1)
    return [indices[(p + half) % len(indices)] for p in range(len(indices))]


# --------------------------------------------------------------------------------------------
# Metrics


def ssim(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """Mean structural similarity (Wang et al. 2004: Gaussian window 11, sigma 1.5) of two
    images [H, W] or [H, W, C], averaged over channels; 1 when identical."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    x = reference.astype(np.float64)
    y = test.astype(np.float64)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two equal-length series; NaN when either is constant."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"series lengths differ: {a.shape} vs {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def sync_score(
    generated: Sequence[float | None], reference: Sequence[float | None]
) -> tuple[float, int]:
    """(Pearson correlation, pairs used) of two mouth-opening tracks, skipping frames where
    either measurement is missing; NaN with fewer than three pairs or a constant track."""
    if len(generated) != len(reference):
        raise ValueError(f"tracks differ in length: {len(generated)} vs {len(reference)}")
    pairs = [
        (g, r) for g, r in zip(generated, reference, strict=True) if g is not None and r is not None
    ]
    if len(pairs) < _MIN_SYNC_FRAMES:
        return float("nan"), len(pairs)
    g, r = zip(*pairs, strict=True)
    return pearson(g, r), len(pairs)


def _psnr_ssim(predicted: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """(PSNR from the pooled squared error, mean SSIM over frames) of two [B, H, W, 3] stacks."""
    score = np.mean([ssim(r, p) for r, p in zip(real, predicted, strict=True)])
    return float(psnr(real, predicted)), float(score)


def region_metrics(
    predicted: np.ndarray, real: np.ndarray, lips: Region | None = None
) -> dict[str, float]:
    """PSNR and SSIM of predicted vs real 320x320 regions (uint8 [B, 320, 320, 3]), averaged
    over frames: of the mouth region (``MOUTH_ROWS`` x ``MOUTH_COLS``), of the whole region
    (PSNR only) and, when given, of ``lips`` (rows, columns: the lips' own box)."""
    if predicted.shape != real.shape or predicted.shape[1:] != (NETWORK_SIZE, NETWORK_SIZE, 3):
        raise ValueError(
            f"expected two [B, 320, 320, 3] arrays, got {predicted.shape}, {real.shape}"
        )
    mouth = (slice(None), MOUTH_ROWS, MOUTH_COLS)
    psnr_mouth, ssim_mouth = _psnr_ssim(predicted[mouth], real[mouth])
    out = {
        "psnr_mouth_db": psnr_mouth,
        "ssim_mouth": ssim_mouth,
        "psnr_inner_db": float(psnr(real, predicted)),
    }
    if lips is not None:
        box = (slice(None), *lips)
        out["psnr_lips_db"], out["ssim_lips"] = _psnr_ssim(predicted[box], real[box])
    return out


def evaluate(
    generator: nn.Module,
    encoder: nn.Module,
    crops: np.ndarray,
    mel_windows: torch.Tensor,
    indices: Sequence[int],
    *,
    boxes: Sequence[CropBox] | None = None,
    full_frames: Sequence[np.ndarray] | None = None,
    measure_opening: OpeningMeasure | None = None,
    reference_openings: Sequence[float | None] | None = None,
    batch_size: int = 4,
    layout: FeatureLayout = SYNCTALK2D,
    lips: Region | None = None,
) -> dict[str, float]:
    """Generate frames ``indices`` twice and measure them against the real crops.

    Once with each frame's own crop as reference (as at inference): ``psnr_mouth_db``,
    ``ssim_mouth``, ``psnr_inner_db`` (and ``psnr_lips_db``, ``ssim_lips`` in the ``lips``
    box, when given). Once with the reference taken from another frame
    (``cross_references``), so that the mouth can only come from the audio:
    ``psnr_mouth_cross_db``, ``ssim_mouth_cross`` (``psnr_lips_cross_db``,
    ``ssim_lips_cross``) and, when ``measure_opening`` and the
    full-body frames (with their ``boxes``, one per index) are given, ``sync_correlation`` and
    ``sync_frames`` (pairs where both openings were measured). The real track is measured on
    ``full_frames`` unless ``reference_openings`` is given. Also ``frames``: how many.
    """
    indices = list(indices)
    if len(indices) < 2:
        raise ValueError(f"evaluation needs at least 2 frames, got {len(indices)}")
    real = np.ascontiguousarray(inner(crops[indices]))
    own = generate(generator, encoder, crops, mel_windows, indices, batch_size, layout=layout)
    cross = generate(
        generator,
        encoder,
        crops,
        mel_windows,
        indices,
        batch_size,
        cross_references(indices),
        layout,
    )
    cross_metrics = region_metrics(cross, real, lips)
    metrics = {
        "frames": float(len(indices)),
        **region_metrics(own, real, lips),
        "psnr_mouth_cross_db": cross_metrics["psnr_mouth_db"],
        "ssim_mouth_cross": cross_metrics["ssim_mouth"],
    }
    if lips is not None:
        metrics["psnr_lips_cross_db"] = cross_metrics["psnr_lips_db"]
        metrics["ssim_lips_cross"] = cross_metrics["ssim_lips"]
    if measure_opening is None or full_frames is None:
        return metrics
    if boxes is None or len(boxes) != len(indices) or len(full_frames) != len(indices):
        raise ValueError("full_frames and boxes must hold one entry per evaluated frame")
    # Measured on the cross-reference frames: with its own crop as reference the network could
    # copy the real mouth and score perfect sync without listening to the audio at all.
    generated_track = [
        measure_opening(paste_prediction(frame, box, pred, crops[i]))
        for frame, box, pred, i in zip(full_frames, boxes, cross, indices, strict=True)
    ]
    if reference_openings is None:
        reference_openings = [measure_opening(frame) for frame in full_frames]
    score, pairs = sync_score(generated_track, list(reference_openings))
    metrics["sync_correlation"] = score
    metrics["sync_frames"] = float(pairs)
    return metrics


def default_opening_measure() -> OpeningMeasure | None:
    """The face-landmark mouth-opening measure, or None where no landmark detector is installed."""
    try:
        from lipstream.avatar import landmarks

        landmarks.predictor_path()  # the model file: without it every detection would fail
    except (ImportError, InvalidInput):
        return None

    def measure(frame: np.ndarray) -> float | None:
        points = landmarks.detect(frame)
        return None if points is None else float(landmarks.mouth_opening(points))

    return measure
