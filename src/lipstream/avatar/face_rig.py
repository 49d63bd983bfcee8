"""Moving a portrait: a landmark-driven piecewise-affine warp of one photo, frame by frame.

The face is covered by triangles whose corners are its 68 landmarks (plus four on the inner lips,
see ``face_layout``), two rings of points around the head and the corners of the region; every
frame moves the corners (jaw and lips from the mouth shape, eyelids for blinks, brows, the whole
head for a slow sway) and maps each triangle of the photo affinely onto its moved self. The outer
ring and the region's corners never move, so everything outside the head stays exactly as in the
photo. Inside the inner lips, which the warp can only stretch, the mouth is painted
(``face_paint``).

The geometry is worked out once per photo (``FaceRig.build``); a frame (``FaceRig.render``)
costs one triangle raster, one ``cv2.remap`` of the head region and a little painting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import Delaunay

from lipstream.avatar import visemes
from lipstream.avatar.face_layout import (
    BROWS,
    CHIN,
    CORNERS,
    EXTRA,
    EYE_A,
    EYE_B,
    FACE_POINTS,
    JAW,
    LIDS,
    LIPS,
    OPEN_PAIRS,
    OUTER_FOLLOW,
    OUTER_LOWER,
    OUTER_UPPER,
)
from lipstream.avatar.face_paint import paint_lids, paint_mouth, sample_colours
from lipstream.errors import InvalidInput

# Sizes in units of the distance between the eye centres ("iod"), so any photo size works.
MAX_GAP = 0.33  # inner-lip gap at open = 1: about 2 cm for a 6.3 cm eye distance
UPPER_SHARE = 0.2  # of an opening, the upper lip rises this much; the jaw does the rest
SPREAD_WIDTH = 0.10  # each corner moves out this far at spread = 1
ROUND_WIDTH = 0.14  # ... and in this far at round = 1
OPEN_NARROW = 0.05  # an open jaw pulls the corners in a little
MIN_EYE_DISTANCE = 16.0  # pixels: smaller faces have too few pixels to animate


@dataclass(frozen=True)
class Pose:
    """Everything that moves in one frame besides the photo itself."""

    mouth: tuple[float, float, float] = visemes.REST  # (open, spread, round), 0..1
    blink: float = 0.0  # 0 eyes open .. 1 closed
    brow: float = 0.0  # 0 rest .. 1 raised
    head: tuple[float, float, float] = (0.0, 0.0, 0.0)  # roll (rad), dx, dy (iod units)


@dataclass(frozen=True, eq=False)
class FaceRig:
    """A portrait prepared for fast warps: triangles, rings and the face's own axes."""

    photo: np.ndarray  # BGR uint8 [H, W, 3]
    # The 68 landmarks, float64 [72, 2], with the eye and inner-lip outlines widened a little
    # (see ``_enclose``), and four more points on the inner lips (``EXTRA``).
    points: np.ndarray
    anchors: np.ndarray  # every triangle corner in the photo, float64 [K, 2]; 0..71 = points
    head_weight: np.ndarray  # how much each anchor follows the head's sway, [K]
    triangles: np.ndarray  # int [T, 3] into anchors
    moving: np.ndarray  # bool [T]: triangles with a corner that can move
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the region that can change
    origin: np.ndarray  # between the eyes
    axes: np.ndarray  # [2, 2]: rows are the face's right and down unit vectors, in pixels
    iod: float  # distance between the eye centres, pixels
    pivot: np.ndarray  # where the head turns (the top of the neck)
    teeth: np.ndarray  # BGR of the teeth (the photo's own where they show)
    lash: np.ndarray  # BGR of the eyelashes, drawn along closed lids
    identity: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((2, 0, 0)))

    @staticmethod
    def build(photo: np.ndarray, points68: np.ndarray) -> FaceRig:
        """Prepare ``photo`` (BGR uint8) with its 68 iBUG landmarks (pixels) for animation."""
        photo, points = _check_inputs(photo, points68)
        height, width = photo.shape[:2]
        eye_a, eye_b = points[EYE_A].mean(0), points[EYE_B].mean(0)
        iod = float(np.linalg.norm(eye_b - eye_a))
        if iod < MIN_EYE_DISTANCE:
            raise InvalidInput(
                f"the face is too small to animate: {iod:.1f} px between the eyes, at least "
                f"{MIN_EYE_DISTANCE:.0f} needed"
            )
        right = (eye_b - eye_a) / iod
        down = np.array([-right[1], right[0]])
        if np.dot(points[CHIN] - eye_a, down) < 0:
            raise InvalidInput("the landmarks are upside down: the chin is above the eyes")
        origin = (eye_a + eye_b) / 2
        axes = np.stack([right, down])
        teeth, lash = sample_colours(photo, points)
        uv = _enclose((points - origin) @ axes.T / iod)
        uv = np.concatenate([uv, [(uv[a] + uv[b]) / 2 for a, b in EXTRA]])
        points = origin + uv @ axes * iod

        chin_v = uv[CHIN, 1]
        top_v = uv[BROWS, 1].min()
        centre = np.array([uv[30, 0], (top_v + chin_v) / 2])
        half = np.array([(uv[16, 0] - uv[0, 0]) / 2, (chin_v - top_v) / 2])
        ring_angles = np.linspace(0, 2 * math.pi, 28, endpoint=False)
        circle = np.stack([np.cos(ring_angles), np.sin(ring_angles)], 1)
        # The inner ring holds the head (hair included) and sways with it; the outer ring is
        # nailed down. The band between them absorbs the sway, and the inner ring reaches well
        # below the chin so the dropping jaw has room to squeeze the neck.
        inner_ring = centre + circle * half * np.array([1.45, 1.55])
        outer_ring = centre + circle * half * np.array([2.2, 2.1])
        mouth_v = uv[CORNERS, 1].mean()
        ring_weight = np.clip((chin_v + 0.1 - inner_ring[:, 1]) / (chin_v + 0.1 - mouth_v), 0, 1)

        def to_px(q: np.ndarray) -> np.ndarray:
            return origin + q @ axes * iod

        rings = np.concatenate([to_px(inner_ring), to_px(outer_ring)])
        weights = np.concatenate([ring_weight, np.zeros(len(outer_ring))])
        outer_px = to_px(outer_ring)
        x0, y0 = np.floor(outer_px.min(0)).astype(int)
        x1, y1 = np.ceil(outer_px.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        frame = np.array(
            [[x, y] for x in (x0, (x0 + x1) / 2, x1 - 1) for y in (y0, (y0 + y1) / 2, y1 - 1)]
        )
        frame = frame[[i for i in range(9) if i != 4]]  # the centre is not a frame point
        # Ring points beyond the region would fall outside the warp: keep them inside it.
        rings[:, 0] = np.clip(rings[:, 0], x0, x1 - 1)
        rings[:, 1] = np.clip(rings[:, 1], y0, y1 - 1)
        anchors = np.concatenate([points, rings, frame])
        head_weight = np.concatenate([np.ones(len(points)), weights, np.zeros(len(frame))])
        anchors, head_weight = _unique(anchors, head_weight, keep=len(points))

        pivot = to_px(np.array([uv[CHIN, 0], chin_v + 0.6]))
        rig = FaceRig(
            photo=photo,
            points=points,
            anchors=anchors,
            head_weight=head_weight,
            triangles=np.zeros((0, 3), int),
            moving=np.zeros(0, bool),
            box=(int(x0), int(y0), int(x1), int(y1)),
            origin=origin,
            axes=axes,
            iod=iod,
            pivot=pivot,
            teeth=teeth,
            lash=lash,
        )
        # Triangulate a pose with the mouth and eyes well open: then the inner-lip and eyelid
        # outlines are triangle edges, and closing them later only flattens triangles that lie
        # inside the mouth or eye, never folds skin over them.
        reference = rig.move(Pose(mouth=(1.0, 0.0, 0.0)))
        triangles = Delaunay(reference).simplices.astype(np.int64)
        movable = head_weight > 0
        movable[: len(points)] = True
        object.__setattr__(rig, "triangles", triangles)
        object.__setattr__(rig, "moving", movable[triangles].any(axis=1))
        # Where each pixel of the region reads from when nothing moves: (x, y) float32 maps.
        object.__setattr__(rig, "identity", np.mgrid[y0:y1, x0:x1][::-1].astype(np.float32))
        return rig

    # ----------------------------------------------------------------------------------------

    def _uv(self, px: np.ndarray) -> np.ndarray:
        return (px - self.origin) @ self.axes.T / self.iod

    def _px(self, uv: np.ndarray) -> np.ndarray:
        return self.origin + uv @ self.axes * self.iod

    def move(self, pose: Pose) -> np.ndarray:
        """Where every anchor goes in ``pose``: float64 [K, 2] pixels (0..67 the landmarks)."""
        uv = self._uv(self.points)
        moved = uv.copy()
        open_, spread, round_ = (float(np.clip(v, 0.0, 1.0)) for v in pose.mouth)

        # Lips: the inner lips meet on a line between them in the photo; opening parts them,
        # mostly by dropping the jaw. The opening is an ellipse across the mouth;
        # rounded lips open more like a circle, the sides nearly as far as the middle.
        centre_u = uv[[60, 64], 0].mean()
        inner_half = max((uv[64, 0] - uv[60, 0]) / 2, 1e-6)
        shift = np.zeros(FACE_POINTS)
        for up, low in OPEN_PAIRS:
            r = min(abs(uv[up, 0] - centre_u) / inner_half, 0.98)
            profile = (1 - r * r) ** (0.5 * (1 - 0.6 * round_))
            gap = open_ * MAX_GAP * profile
            # Closing is mostly the jaw rising: the lips meet nearer the upper one.
            meet = uv[up, 1] + 0.3 * (uv[low, 1] - uv[up, 1])
            moved[up, 1] = meet - UPPER_SHARE * gap
            moved[low, 1] = meet + (1 - UPPER_SHARE) * gap
            moved[[up, low], 0] = uv[[up, low], 0].mean()  # so that closed lips truly meet
            shift[up], shift[low] = moved[up, 1] - uv[up, 1], moved[low, 1] - uv[low, 1]
        drop = shift[66]  # how far the jaw moves down from the photo's (signed)
        # The outer upper lip follows its inner edge half-way; the lower lip rides on the jaw,
        # but when closing the lips relax and fill out, which also covers the lip's inner edge
        # that detectors tend to place too low.
        for outer, inner in OUTER_FOLLOW:
            follow = 0.5 if outer < 55 else (1.0 if shift[inner] > 0 else 0.6)
            moved[outer, 1] += shift[inner] * follow
        for c in CORNERS:
            moved[c, 1] += 0.45 * drop
        # Pouting thickens the lips; spreading thins them.
        thick = 0.03 * round_ - 0.015 * spread
        moved[OUTER_UPPER, 1] -= thick
        moved[OUTER_LOWER, 1] += thick

        # Width: scale the lips about the mouth's centre line.
        half_width = (uv[54, 0] - uv[48, 0]) / 2
        change = SPREAD_WIDTH * spread - ROUND_WIDTH * round_ - OPEN_NARROW * open_
        scale = max(0.4, 1 + change / max(half_width, 1e-6))
        moved[LIPS, 0] = centre_u + (moved[LIPS, 0] - centre_u) * scale

        # Jaw: a hinge near the ears, so points move more the nearer they are to the chin.
        hinge_v = uv[[0, 16], 1].mean()
        reach = np.clip((uv[JAW, 1] - hinge_v) / max(uv[CHIN, 1] - hinge_v, 1e-6), 0, 1)
        moved[JAW, 1] += drop * reach**1.5

        # Eyelids close onto the lower lids, which rise a little to meet them.
        blink = float(np.clip(pose.blink, 0.0, 1.0))
        for up, low in LIDS:
            meet = uv[low, 1] - 0.25 * (uv[low, 1] - uv[up, 1])
            moved[up, 1] += blink * (meet - uv[up, 1])
            moved[low, 1] += blink * (meet - uv[low, 1])
        moved[BROWS, 1] -= 0.06 * float(np.clip(pose.brow, 0.0, 1.0)) - 0.015 * blink

        out = self.anchors.copy()
        out[: len(uv)] = self._px(moved)
        roll, dx, dy = pose.head
        if roll or dx or dy:
            cos, sin = math.cos(roll), math.sin(roll)
            rotation = np.array([[cos, -sin], [sin, cos]])
            turned = (out - self.pivot) @ rotation.T + self.pivot
            turned += (np.array([dx, dy]) @ self.axes) * self.iod
            w = self.head_weight[:, None]
            out = out + w * (turned - out)
        return out

    def render(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """The photo in ``pose`` (BGR uint8, its size) and the moved 68 landmarks [68, 2]."""
        dest = self.move(pose)
        x0, y0, x1, y1 = self.box
        maps = _backward_maps(dest, self.anchors, self.triangles[self.moving], self.identity)
        if maps is None:
            return self.photo.copy(), dest[:68].astype(np.float32)
        map_x, map_y = maps
        region = cv2.remap(
            self.photo, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        paint_mouth(region, dest[:FACE_POINTS] - (x0, y0), self.iod, self.teeth)
        paint_lids(region, dest[:68] - (x0, y0), pose.blink, self.lash)
        frame = self.photo.copy()
        frame[y0:y1, x0:x1] = region
        return frame, dest[:68].astype(np.float32)


def _check_inputs(photo: np.ndarray, points68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3:
        raise InvalidInput("the photo must be a uint8 BGR image [H, W, 3]")
    if photo.shape[2] != 3:
        raise InvalidInput(f"the photo must be a uint8 BGR image [H, W, 3], got {photo.shape}")
    points = np.asarray(points68, dtype=np.float64)
    if points.shape != (68, 2) or not np.all(np.isfinite(points)):
        raise InvalidInput(f"face landmarks must be 68 finite (x, y) points, got {points.shape}")
    height, width = photo.shape[:2]
    outside = (points[:, 0] < 0) | (points[:, 0] > width - 1)
    outside |= (points[:, 1] < 0) | (points[:, 1] > height - 1)
    if outside.any():
        raise InvalidInput(
            f"{int(outside.sum())} of the 68 face landmarks lie outside the {width}x{height} "
            "photo: the whole face, chin and brows included, must be in the picture"
        )
    return np.ascontiguousarray(photo), points


def _enclose(uv: np.ndarray) -> np.ndarray:
    """Widen the eye and inner-lip outlines (face units) so they hold all of the eye and teeth.

    Detectors put these points on the inside of the lash line and the lip edge; the eye white
    and teeth just outside would stay visible as specks when the lids or lips close.
    """
    out = uv.copy()
    out[[37, 38, 43, 44], 1] -= 0.035
    out[[40, 41, 46, 47], 1] += 0.025
    out[[36, 45], 0] += np.array([-0.02, 0.02])
    out[[39, 42], 0] += np.array([0.015, -0.015])
    out[[61, 62, 63], 1] -= 0.025
    # Inner corners part way towards the outer ones: teeth show deep into a smile's corners.
    out[60] += 0.6 * (uv[48] - uv[60])
    out[64] += 0.6 * (uv[54] - uv[64])
    return out


def _unique(anchors: np.ndarray, weights: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    # Ring points clipped onto the region's edge may coincide; Delaunay needs distinct points.
    seen = {tuple(np.round(p, 1)) for p in anchors[:keep]}
    rows = list(range(keep))
    for i in range(keep, len(anchors)):
        key = tuple(np.round(anchors[i], 1))
        if key not in seen:
            seen.add(key)
            rows.append(i)
    return anchors[rows], weights[rows]


def _backward_maps(
    dest: np.ndarray, src: np.ndarray, triangles: np.ndarray, identity: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per output pixel of the region, where to read the photo (inverse piecewise-affine map).

    ``identity`` holds the region's own pixel coordinates, [2, h, w] (x then y).
    """
    x0, y0 = int(identity[0, 0, 0]), int(identity[1, 0, 0])
    h, w = identity.shape[1:]
    d = dest[triangles]  # [T, 3, 2]
    area = (d[:, 1, 0] - d[:, 0, 0]) * (d[:, 2, 1] - d[:, 0, 1]) - (d[:, 2, 0] - d[:, 0, 0]) * (
        d[:, 1, 1] - d[:, 0, 1]
    )
    # Flattened triangles (closed lips, shut eyes) cover no pixels: skip them, their edges are
    # drawn by their neighbours.
    keep = np.abs(area) > 0.05
    triangles, d = triangles[keep], d[keep]
    if not len(triangles):
        return None
    homogeneous = np.concatenate([d, np.ones((len(d), 3, 1))], axis=2)  # [T, 3, 3]
    affine = np.linalg.solve(homogeneous, src[triangles])  # [T, 3, 2]: [x, y, 1] @ A -> src
    labels = np.full((h, w), -1, np.int32)
    fixed = np.round((d - (x0, y0)) * 16).astype(np.int32)  # 4 fractional bits for the raster
    for index, corners in enumerate(fixed):
        cv2.fillConvexPoly(labels, corners, index, lineType=cv2.LINE_8, shift=4)
    ys, xs = np.nonzero(labels >= 0)
    lab = labels[ys, xs]
    px, py = xs + float(x0), ys + float(y0)
    map_x, map_y = identity[0].copy(), identity[1].copy()
    map_x[ys, xs] = px * affine[lab, 0, 0] + py * affine[lab, 1, 0] + affine[lab, 2, 0]
    map_y[ys, xs] = px * affine[lab, 0, 1] + py * affine[lab, 1, 1] + affine[lab, 2, 1]
    return map_x, map_y
