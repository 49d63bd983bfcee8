"""Crop geometry shared by the avatar builder, the lip-sync service and the tests.

SyncTalk_2D-compatible models see a square face crop taken from the full video frame:

1. the box comes from three landmarks: ``xmin = lms[1].x``, ``xmax = lms[31].x`` (cheek to
   cheek), ``ymin = lms[52].y`` (mid-nose), and the box is square, ``ymax = ymin + (xmax - xmin)``;
2. the box is cut out of the frame and resized to ``CROP_SIZE`` x ``CROP_SIZE`` (328) with
   bicubic interpolation;
3. the network sees the inner ``NETWORK_SIZE`` (320) region ``crop[4:324, 4:324]``; its second
   input is the same region with the mouth rectangle ``MASK`` painted black;
4. a 320x320 prediction replaces that inner region, the 328 crop is resized back to the box size
   (bicubic) and written into the frame at the box. The 4-pixel border keeps the original pixels,
   which hides the seam.

Bounds are always ``[xmin, ymin, xmax, ymax]`` in full-frame pixels, ``xmax``/``ymax`` exclusive,
exactly the slice ``frame[ymin:ymax, xmin:xmax]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipstream.errors import InvalidInput

CROP_SIZE = 328
"""Side of the square crop the box is resized to, in pixels."""
INNER_OFFSET = 4
"""Border of the 328 crop that the network never sees, in pixels."""
NETWORK_SIZE = 320
"""Side of the network's input and output region, in pixels."""
PREDICTION_SHAPE = f"{NETWORK_SIZE}x{NETWORK_SIZE}x3"
"""The mouth region's shape as the guide's messages name it (height x width x BGR)."""

# Landmark indices that define the box (SyncTalk_2D's 110-point layout; a 68-point file
# works too as long as these indices exist).
LEFT_CHEEK = 1
RIGHT_CHEEK = 31
NOSE = 52
MIN_LANDMARKS = NOSE + 1

# A box smaller than this cannot hold a face worth lip-syncing; it signals broken landmarks.
MIN_BOX_SIDE = 16


@dataclass(frozen=True)
class MaskRect:
    """The mouth rectangle painted black in the network's second input.

    Coordinates are in the 320x320 network region with OpenCV ``Rect`` semantics: rows
    ``y .. y + height - 1`` and columns ``x .. x + width - 1`` are set to 0.
    """

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if min(self.x, self.y) < 0 or min(self.width, self.height) <= 0:
            raise InvalidInput(f"mask rectangle must have x, y >= 0 and a positive size: {self}")
        if self.x + self.width > NETWORK_SIZE or self.y + self.height > NETWORK_SIZE:
            raise InvalidInput(
                f"mask rectangle must lie inside {NETWORK_SIZE}x{NETWORK_SIZE}: {self}"
            )

    @property
    def rows(self) -> slice:
        """The masked rows of the network region."""
        return slice(self.y, self.y + self.height)

    @property
    def cols(self) -> slice:
        """The masked columns of the network region."""
        return slice(self.x, self.x + self.width)


# SyncTalk_2D draws cv2.rectangle(img, (5, 5, 310, 305), 0, -1): rows 5..309, columns 5..314.
MASK = MaskRect(x=5, y=5, width=310, height=305)


@dataclass(frozen=True)
class CropBox:
    """A face box in full-frame pixels; ``xmax``/``ymax`` are exclusive (a numpy slice)."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int

    def __post_init__(self) -> None:
        if self.xmin < 0 or self.ymin < 0 or self.xmax <= self.xmin or self.ymax <= self.ymin:
            raise InvalidInput(
                f"crop box must satisfy 0 <= xmin < xmax and 0 <= ymin < ymax, got {self.as_list()}"
            )

    @property
    def width(self) -> int:
        """Box width in pixels."""
        return self.xmax - self.xmin

    @property
    def height(self) -> int:
        """Box height in pixels."""
        return self.ymax - self.ymin

    def as_list(self) -> list[int]:
        """``[xmin, ymin, xmax, ymax]`` as plain ints (for JSON and wire messages)."""
        return [int(self.xmin), int(self.ymin), int(self.xmax), int(self.ymax)]

    @classmethod
    def from_bounds(cls, bounds: np.ndarray | list[int] | tuple[int, ...]) -> CropBox:
        """A box from ``[xmin, ymin, xmax, ymax]``."""
        values = [int(v) for v in np.asarray(bounds).reshape(-1)]
        if len(values) != 4:
            raise InvalidInput(f"bounds must be [xmin, ymin, xmax, ymax], got {values}")
        return cls(*values)

    def fits(self, frame_width: int, frame_height: int) -> bool:
        """Whether the box lies wholly inside a frame of the given size."""
        return self.xmax <= frame_width and self.ymax <= frame_height


def parse_landmarks(text: str, source: str = "landmarks") -> np.ndarray:
    """Landmarks from the text of a ``.lms`` file: one ``x y`` pair per line -> int32 [K, 2].

    Values are parsed as floats and truncated toward zero, as SyncTalk_2D does.
    """
    points: list[tuple[float, float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise InvalidInput(
                f"{source}: line {lineno} must hold two numbers 'x y', got {line.strip()!r}"
            )
        try:
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            raise InvalidInput(
                f"{source}: line {lineno} must hold two numbers 'x y', got {line.strip()!r}"
            ) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InvalidInput(
                f"{source}: line {lineno} holds a non-finite value: {line.strip()!r}"
            )
        points.append((x, y))
    if len(points) < MIN_LANDMARKS:
        raise InvalidInput(
            f"{source}: needs at least {MIN_LANDMARKS} landmarks (indices {LEFT_CHEEK}, "
            f"{RIGHT_CHEEK} and {NOSE} define the crop), found {len(points)}"
        )
    return np.asarray(points, dtype=np.float64).astype(np.int32)


def read_landmarks(path: str | Path) -> np.ndarray:
    """Landmarks from a ``.lms`` file as int32 [K, 2]."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InvalidInput(f"landmarks file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read landmarks file {path}: {exc}") from exc
    return parse_landmarks(text, source=str(path))


def crop_box(landmarks: np.ndarray, frame_width: int, frame_height: int) -> CropBox:
    """The square face box for one frame, clipped to the frame.

    The reference implementation slices the frame with the raw box, so a box running past the
    right or bottom edge is silently shortened; clipping here gives the same pixels and makes the
    stored bounds honest. A box that would be empty or tiny after clipping is refused.
    """
    lms = np.asarray(landmarks)
    if lms.ndim != 2 or lms.shape[1] != 2 or lms.shape[0] < MIN_LANDMARKS:
        raise InvalidInput(f"landmarks must be an array [K>={MIN_LANDMARKS}, 2], got {lms.shape}")
    xmin, xmax = int(lms[LEFT_CHEEK, 0]), int(lms[RIGHT_CHEEK, 0])
    ymin = int(lms[NOSE, 1])
    side = xmax - xmin
    if side < MIN_BOX_SIDE:
        raise InvalidInput(
            f"landmarks give a box {side} px wide (lms[{RIGHT_CHEEK}].x - lms[{LEFT_CHEEK}].x); "
            f"at least {MIN_BOX_SIDE} px is needed"
        )
    ymax = ymin + side
    clipped = (max(xmin, 0), max(ymin, 0), min(xmax, frame_width), min(ymax, frame_height))
    if clipped[2] - clipped[0] < MIN_BOX_SIDE or clipped[3] - clipped[1] < MIN_BOX_SIDE:
        raise InvalidInput(
            f"box {[xmin, ymin, xmax, ymax]} from the landmarks falls outside the "
            f"{frame_width}x{frame_height} frame"
        )
    return CropBox(*clipped)


def _check_frame(frame: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidInput(f"frame must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")


def crop_frame(frame: np.ndarray, box: CropBox) -> np.ndarray:
    """The box cut out of a BGR frame and resized to 328x328 (bicubic, as at inference)."""
    _check_frame(frame)
    if not box.fits(frame.shape[1], frame.shape[0]):
        raise InvalidInput(
            f"crop box {box.as_list()} does not fit a {frame.shape[1]}x{frame.shape[0]} frame"
        )
    region = frame[box.ymin : box.ymax, box.xmin : box.xmax]
    return cv2.resize(region, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)


def inner(crop: np.ndarray) -> np.ndarray:
    """The 320x320 network region of a 328 crop, or of a batch [..., 328, 328, C] (a view)."""
    if crop.shape[-3:-1] != (CROP_SIZE, CROP_SIZE):
        raise InvalidInput(f"crop must be {CROP_SIZE}x{CROP_SIZE}, got {crop.shape}")
    end = INNER_OFFSET + NETWORK_SIZE
    return crop[..., INNER_OFFSET:end, INNER_OFFSET:end, :]


def masked(region: np.ndarray, mask: MaskRect = MASK) -> np.ndarray:
    """A copy of a 320x320 region (or a batch [..., 320, 320, C]) with the mouth zeroed."""
    if region.shape[-3:-1] != (NETWORK_SIZE, NETWORK_SIZE):
        raise InvalidInput(f"region must be {NETWORK_SIZE}x{NETWORK_SIZE}, got {region.shape}")
    out = region.copy()
    out[..., mask.rows, mask.cols, :] = 0
    return out


def with_prediction(crop: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """A copy of the 328 crop whose inner 320 region is replaced by ``prediction``."""
    if prediction.shape != (NETWORK_SIZE, NETWORK_SIZE, 3):
        raise InvalidInput(
            f"prediction must be [{NETWORK_SIZE}, {NETWORK_SIZE}, 3], got {prediction.shape}"
        )
    out = crop.copy()
    inner(out)[...] = prediction
    return out


def paste(frame: np.ndarray, box: CropBox, crop: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` with a 328 crop resized to the box (bicubic) and written into it."""
    _check_frame(frame)
    if crop.shape != (CROP_SIZE, CROP_SIZE, 3):
        raise InvalidInput(f"crop must be [{CROP_SIZE}, {CROP_SIZE}, 3], got {crop.shape}")
    if not box.fits(frame.shape[1], frame.shape[0]):
        raise InvalidInput(
            f"crop box {box.as_list()} does not fit a {frame.shape[1]}x{frame.shape[0]} frame"
        )
    out = frame.copy()
    out[box.ymin : box.ymax, box.xmin : box.xmax] = cv2.resize(
        crop, (box.width, box.height), interpolation=cv2.INTER_CUBIC
    )
    return out


def paste_prediction(
    frame: np.ndarray, box: CropBox, prediction: np.ndarray, crop: np.ndarray | None = None
) -> np.ndarray:
    """A copy of ``frame`` with a 320x320 prediction pasted back as SyncTalk_2D does.

    ``crop`` is the frame's 328 crop; pass it when already at hand to skip recomputing it.
    """
    if crop is None:
        crop = crop_frame(frame, box)
    return paste(frame, box, with_prediction(crop, prediction))


# The same box from the iBUG 68-point convention (what the avatar builder's detector gives).
# The 68-point jaw line (0-16) runs ear to ear like SyncTalk_2D's contour, at half the density,
# so their contour points 1 and 31 fall between 68-point points 0 and 1, and 15 and 16: the
# midpoints of those pairs give the cheek-to-cheek sides. Point 29, the lower middle of the nose
# bridge (27 lies between the eyes, 30 is the tip), is the top.
FACE68_LEFT_CHEEK = (0, 1)
FACE68_RIGHT_CHEEK = (15, 16)
FACE68_NOSE = 29


def face68_square(points: np.ndarray) -> tuple[float, float, float]:
    """``(xmin, ymin, side)`` of the unclipped square box of 68 face landmarks, in float pixels.

    The sides run through the cheeks at the height of the eyes, the top through the middle of
    the nose, and the square reaches below the chin, so the network's masked rectangle holds
    the mouth, the jaw and the chin, as in SyncTalk_2D's crops. Kept in float so that a video's
    boxes can be smoothed over time before they are rounded.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
        raise InvalidInput(f"points must be 68 finite face landmarks [68, 2], got {pts.shape}")
    xmin = float(pts[list(FACE68_LEFT_CHEEK), 0].mean())
    xmax = float(pts[list(FACE68_RIGHT_CHEEK), 0].mean())
    return xmin, float(pts[FACE68_NOSE, 1]), xmax - xmin


def fit_square(
    xmin: float, ymin: float, side: float, frame_width: int, frame_height: int
) -> CropBox:
    """A square box rounded to whole pixels and moved (not cut) to lie inside the frame.

    Cutting a box at the frame's edge, as the ``.lms`` rule does, stretches the crop; moving it
    keeps the face's proportions and keeps its size steady from frame to frame. A box larger
    than the frame shrinks to the frame's shorter side.
    """
    size = min(round(side), frame_width, frame_height)
    if size < MIN_BOX_SIDE:
        raise InvalidInput(f"face box is {side:.0f} px wide; at least {MIN_BOX_SIDE} px is needed")
    # Keep the centre where it was when the side shrinks.
    x = round(xmin + (side - size) / 2)
    y = round(ymin + (side - size) / 2)
    x = min(max(x, 0), frame_width - size)
    y = min(max(y, 0), frame_height - size)
    return CropBox(x, y, x + size, y + size)


def crop_box_from_face68(points: np.ndarray, frame_width: int, frame_height: int) -> CropBox:
    """The square face box for one frame from its 68 face landmarks, inside the frame.

    The 68-point counterpart of ``crop_box``: see ``face68_square`` for which points give the box
    and ``fit_square`` for what happens at the frame's edges.
    """
    return fit_square(*face68_square(points), frame_width, frame_height)
