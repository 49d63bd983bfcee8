"""Offline face landmarks in the iBUG 68-point convention, for still images and video.

Faces are found with dlib's HOG frontal face detector (built into dlib) and the 68 points are
placed by dlib's shape predictor, whose trained file ships inside the ``face-recognition-models``
wheel. Nothing is downloaded.

The 68 points (0-based): 0-16 jaw line (0 at the subject's right ear side, 8 the chin), 17-26
brows, 27-30 nose bridge (30 the tip), 31-35 nostrils, 36-41 and 42-47 the eyes, 48-59 outer lips
(48 and 54 the corners), 60-67 inner lips (60 and 64 the corners, 61-63 upper, 65-67 lower).

Video is handled by tracking: once a face is found, the next frame is searched only in a window
around it, scaled so the face has the size the detector likes best; a full-frame search (on a
downscaled copy when the frame is large) happens on the first frame and whenever the window comes
up empty.

Importing this module raises ImportError where dlib or the landmark model is not installed, so
callers can tell "no detector here" from a detector that found nothing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np

from lipstream.avatar.face_layout import EYE_A, EYE_B, INNER_PAIRS
from lipstream.errors import InvalidInput

if importlib.util.find_spec("face_recognition_models") is None:
    raise ImportError(
        "face landmarks need the 68-point model: install the 'face-recognition-models' package"
    )

POINTS = 68

_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
# dlib's HOG detector scans an 80x80 window; faces somewhat larger than that score best.
_TRACK_FACE_SIDE = 120.0
# The tracking window reaches this many face sizes beyond the previous face on every side.
_TRACK_MARGIN = 0.6
# A face found by a full-frame look takes over the track when it is this much larger.
_SWITCH_AREA = 1.5
# A detection scoring this much below the best one in the frame is texture that looks like a
# face (a patterned suit scores 0.05 beside a real face's 1.6), not a face. Real faces can score
# low too (a half-turned head at 0.02 beside a background face at 0.9): the margin keeps them.
_SCORE_MARGIN = 1.0


@dataclass(frozen=True)
class _Rect:
    """A face rectangle in full-frame pixels (float, right/bottom exclusive)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0  # the detector's confidence

    @property
    def side(self) -> float:
        return max(self.right - self.left, self.bottom - self.top)

    @property
    def area(self) -> float:
        return (self.right - self.left) * (self.bottom - self.top)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2


def _main_face(found: list[_Rect]) -> _Rect:
    """The largest detection among those scoring within ``_SCORE_MARGIN`` of the best."""
    best = max(r.score for r in found)
    return max((r for r in found if r.score >= best - _SCORE_MARGIN), key=lambda r: r.area)


def predictor_path() -> Path:
    """Where the 68-point shape predictor file lies (inside the face-recognition-models wheel).

    The package is located without importing it: its ``__init__`` needs ``pkg_resources``, which
    recent setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "models" / _PREDICTOR_FILE
        if path.is_file():
            return path
    raise InvalidInput(
        f"the face landmark model {_PREDICTOR_FILE} was not found: install the "
        "'face-recognition-models' and 'dlib-bin' packages"
    )


@lru_cache(maxsize=1)
def _models() -> tuple[Any, Any]:
    # Loading the 100 MB predictor takes about a second: do it once per process.
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise InvalidInput("frame must be a uint8 BGR image [H, W, 3]")
    if frame.shape[2] != 3:
        raise InvalidInput(f"frame must be a uint8 BGR image [H, W, 3], got {frame.shape}")


class FaceLandmarker:
    """Finds the main face (the largest real one) in BGR frames and returns its 68 landmarks.

    ``detect`` looks at one image on its own; ``track`` remembers the face between calls (for
    the frames of one video, in order) and is several times faster. ``reset`` forgets it.
    """

    def __init__(
        self, max_side: int = 640, upsample_when_missed: bool = True, recheck_every: int = 12
    ):
        """``max_side``: full-frame searches run on a copy no larger than this (pixels).

        ``upsample_when_missed``: when the downscaled search finds nothing, search again at twice
        that size, which finds faces down to about 40 px (in the downscaled copy) at 4x the cost.
        ``recheck_every``: while tracking, search the whole frame every this many frames too.
        """
        if max_side < 160:
            raise InvalidInput(f"max_side must be at least 160 pixels, got {max_side}")
        if recheck_every < 1:
            raise InvalidInput(f"recheck_every must be at least 1, got {recheck_every}")
        self.max_side = int(max_side)
        self.upsample_when_missed = upsample_when_missed
        self.recheck_every = int(recheck_every)
        self._detector, self._predictor = _models()
        self._previous: _Rect | None = None
        self._since_full = 0

    def reset(self) -> None:
        """Forget the tracked face (call between unrelated videos)."""
        self._previous = None
        self._since_full = 0

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """The main face's 68 points, float32 [68, 2] full-frame pixels, or None."""
        _check_frame(frame)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        rect = self._search_full(rgb)
        return None if rect is None else self._shape(rgb, rect)

    def track(self, frame: np.ndarray) -> np.ndarray | None:
        """Like ``detect``, but searches near the face found in the previous call first."""
        _check_frame(frame)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        rect = None
        if self._previous is not None:
            rect = self._search_near(rgb, self._previous)
            self._since_full += 1
            if rect is not None and self._since_full >= self.recheck_every:
                # If the subject turned away for a moment, the track may have jumped to someone
                # in the background; a look at the whole frame brings it back to the main face.
                self._since_full = 0
                largest = self._search_full(rgb, upsample=False)
                if largest is not None and largest.area > _SWITCH_AREA * rect.area:
                    rect = largest
        if rect is None:
            rect = self._search_full(rgb)
            self._since_full = 0
        self._previous = rect
        return None if rect is None else self._shape(rgb, rect)

    # ----------------------------------------------------------------------------------------

    def _run(self, image: np.ndarray, upsample: int) -> list[_Rect]:
        rects, scores, _ = self._detector.run(image, upsample, 0.0)
        return [
            _Rect(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(score))
            for r, score in zip(rects, scores, strict=True)
        ]

    def _search_full(self, rgb: np.ndarray, upsample: bool = True) -> _Rect | None:
        height, width = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = rgb
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        found = self._run(small, 0)
        if not found and upsample and self.upsample_when_missed:
            found = self._run(small, 1)
        if not found:
            return None
        best = _main_face(found)
        return _Rect(
            best.left / scale, best.top / scale, best.right / scale, best.bottom / scale, best.score
        )

    def _search_near(self, rgb: np.ndarray, previous: _Rect) -> _Rect | None:
        height, width = rgb.shape[:2]
        side = previous.side
        margin = _TRACK_MARGIN * side
        x0 = int(max(0, previous.left - margin))
        y0 = int(max(0, previous.top - margin))
        x1 = int(min(width, previous.right + margin))
        y1 = int(min(height, previous.bottom + margin))
        if x1 - x0 < side / 2 or y1 - y0 < side / 2:
            return None  # the face left the frame: look everywhere
        scale = _TRACK_FACE_SIDE / side
        window = rgb[y0:y1, x0:x1]
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        found = self._run(cv2.resize(window, size, interpolation=interpolation), 0)
        if not found:
            return None
        # A second face near the tracked one (someone behind) must not steal the track:
        # keep the candidate closest to where the face was.
        cx, cy = previous.centre

        def distance(r: _Rect) -> float:
            rx, ry = (r.left + r.right) / 2 / scale + x0, (r.top + r.bottom) / 2 / scale + y0
            return float(np.hypot(rx - cx, ry - cy))

        best = min(found, key=distance)
        return _Rect(
            best.left / scale + x0,
            best.top / scale + y0,
            best.right / scale + x0,
            best.bottom / scale + y0,
        )

    def _shape(self, rgb: np.ndarray, rect: _Rect) -> np.ndarray:
        box = dlib.rectangle(
            round(rect.left), round(rect.top), round(rect.right) - 1, round(rect.bottom) - 1
        )
        shape = self._predictor(rgb, box)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


@lru_cache(maxsize=1)
def _shared() -> FaceLandmarker:
    return FaceLandmarker()


def detect(frame: np.ndarray) -> np.ndarray | None:
    """The main face's 68 points in one BGR frame (float32 [68, 2] pixels), or None."""
    return _shared().detect(frame)


def mouth_opening(points: np.ndarray) -> float:
    """How far the mouth is open: the mean inner-lip gap over the distance between eye centres.

    The gap is measured between the upper and lower inner-lip points (61-67, 62-66, 63-65);
    dividing by the inter-ocular distance makes it independent of face size and distance to the
    camera. About 0 for a closed mouth, typically 0.1-0.5 while speaking.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (POINTS, 2):
        raise InvalidInput(f"points must be the 68 face landmarks [68, 2], got {pts.shape}")
    gap = np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in INNER_PAIRS])  # how far open
    eyes = np.linalg.norm(pts[EYE_A].mean(axis=0) - pts[EYE_B].mean(axis=0))
    if not eyes > 0:
        raise InvalidInput("points give zero distance between the eyes; they are not a face")
    return float(gap / eyes)
