"""A face followed through a video: gaps bridged, faceless ends dropped, steady crop boxes.

The landmark detector finds the face on most frames; ``resolve_faces`` drops the faceless
frames at the start and the end and interpolates short gaps in between (refusing long ones,
where a pasted mouth would be guessed over too long). ``steady_boxes`` turns the landmarks into
one crop box per frame that follows the head without shaking, restarting at cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import savgol_filter

from lipstream.audio.timeline import FPS
from lipstream.errors import InvalidInput
from lipstream.geometry import CropBox, face68_square, fit_square

MAX_GAP_FRAMES = 12
"""Longest run of faceless frames (inside the video) bridged by interpolation: about 0.5 s."""

# Savitzky-Golay windows (frames): the centre follows head motion within ~0.4 s, the size
# (which changes only with the distance to the camera) is held steadier.
CENTRE_WINDOW = 11
SIZE_WINDOW = 25
# A jump of the face centre by this fraction of the box side between two frames is a cut (or a
# different face): the smoothing restarts there instead of blending two places.
CUT_FRACTION = 0.35


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame landmarks after trimming faceless ends and bridging short gaps."""

    landmarks: np.ndarray  # float32 [N, 68, 2], frames first..last of the source
    first: int  # index of the first kept frame in the 25 fps video
    dropped_leading: int
    dropped_trailing: int
    interpolated: list[int]  # indices (in the kept frames) whose landmarks were interpolated


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _describe(run: tuple[int, int]) -> str:
    a, b = run
    frames = f"frame {a}" if a == b else f"frames {a}-{b}"
    return f"{frames} ({a / FPS:.2f}-{(b + 1) / FPS:.2f} s)"


def resolve_faces(
    points: list[np.ndarray | None], video: str | Path, max_gap: int = MAX_GAP_FRAMES
) -> FaceTrack:
    """Drop faceless frames at the ends and interpolate short faceless gaps in between.

    Raises InvalidInput naming the frames when no frame has a face or a gap is longer than
    ``max_gap`` frames (a pasted mouth would be guessed over too long a stretch).
    """
    found = [i for i, p in enumerate(points) if p is not None]
    if not found:
        raise InvalidInput(f"no face found in {video}")
    first, last = found[0], found[-1]
    missing = [i for i in range(first, last + 1) if points[i] is None]
    runs = _runs(missing)
    long = [run for run in runs if run[1] - run[0] + 1 > max_gap]
    if long:
        listed = ", ".join(_describe(run) for run in long[:10])
        more = f" and {len(long) - 10} more" if len(long) > 10 else ""
        raise InvalidInput(
            f"no face found in {video} in {listed}{more}; gaps of up to {max_gap} frames are "
            "bridged, longer ones are not: cut those parts out of the video or keep the face "
            "in view"
        )
    kept = [np.asarray(p, dtype=np.float32) if p is not None else None for p in points]
    for a, b in runs:
        before, after = kept[a - 1], kept[b + 1]
        assert before is not None and after is not None
        for i in range(a, b + 1):
            w = (i - a + 1) / (b - a + 2)
            kept[i] = (1 - w) * before + w * after
    landmarks = np.stack([p for p in kept[first : last + 1] if p is not None])
    return FaceTrack(
        landmarks=landmarks.astype(np.float32),
        first=first,
        dropped_leading=first,
        dropped_trailing=len(points) - 1 - last,
        interpolated=[i - first for i in missing],
    )


def _savgol(values: np.ndarray, window: int, order: int) -> np.ndarray:
    window = min(window, len(values) - (1 - len(values) % 2))  # odd, at most the length
    if window <= order:
        return values
    return savgol_filter(values, window, order, mode="nearest")


def smooth_squares(squares: np.ndarray) -> np.ndarray:
    """Steady boxes: Savitzky-Golay smoothing of ``[xmin, ymin, side]`` rows over time.

    The box centre and side are smoothed separately (the side more), and the smoothing restarts
    at cuts, where the face jumps, so boxes on either side of a cut are not blended.
    """
    squares = np.asarray(squares, dtype=np.float64)
    centres = squares[:, :2] + squares[:, 2:3] / 2
    sides = squares[:, 2].copy()
    jumps = np.linalg.norm(np.diff(centres, axis=0), axis=1) > CUT_FRACTION * sides[1:]
    bounds = [0, *(np.flatnonzero(jumps) + 1).tolist(), len(squares)]
    out = np.empty_like(squares)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        cx = _savgol(centres[lo:hi, 0], CENTRE_WINDOW, 2)
        cy = _savgol(centres[lo:hi, 1], CENTRE_WINDOW, 2)
        side = _savgol(sides[lo:hi], SIZE_WINDOW, 1)
        out[lo:hi] = np.stack([cx - side / 2, cy - side / 2, side], axis=1)
    return out


def steady_boxes(landmarks: np.ndarray, frame_width: int, frame_height: int) -> list[CropBox]:
    """The crop box of every frame from its 68 landmarks, smoothed over time, inside the frame."""
    squares = np.array([face68_square(p) for p in landmarks])
    return [
        fit_square(xmin, ymin, side, frame_width, frame_height)
        for xmin, ymin, side in smooth_squares(squares).tolist()
    ]
