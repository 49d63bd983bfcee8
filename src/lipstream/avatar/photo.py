"""Making a portrait talk: a landmark-driven warp of one photo, frame by frame.

The face is covered by triangles whose corners are its 68 landmarks, two rings of points around
the head and the corners of the region; every frame moves the corners (jaw and lips from the
mouth shape, eyelids for blinks, brows, the whole head for a slow sway) and maps each triangle of
the photo affinely onto its moved self (a piecewise-affine warp). The outer ring and the region's
corners never move, so everything outside the head stays exactly as in the photo. Inside the
inner lips, which the warp can only stretch, the mouth is painted: a dark cavity with upper teeth
(and lower teeth when wide open).

The geometry is worked out once per photo (``FaceRig``); a frame costs one triangle raster, one
``cv2.remap`` of the head region and a little painting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from lipstream.audio.pcm import AudioChunk
from lipstream.avatar import tts, visemes
from lipstream.avatar.landmarks import mouth_opening
from lipstream.errors import InvalidInput
from lipstream.video import Mp4Writer

# The rate of the silent track of idle clips (any rate works; this one is cheap to encode).
AUDIO_RATE = 16000
FPS = visemes.FPS

# Landmark groups of the iBUG 68-point layout.
JAW = np.arange(0, 17)
CHIN = 8
BROWS = np.arange(17, 27)
EYE_A, EYE_B = np.arange(36, 42), np.arange(42, 48)
LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))  # (upper, lower) eyelid pairs
OUTER_UPPER = np.arange(49, 54)
OUTER_LOWER = np.arange(55, 60)
INNER_PAIRS = ((61, 67), (62, 66), (63, 65))
CORNERS = (48, 54, 60, 64)
INNER = np.array([60, 61, 62, 63, 64, 65, 66, 67])
# Four more points on the inner lips, half-way between the corners and their neighbours: with
# the landmarks alone the lower lip would open as a V from the corners.
EXTRA = ((60, 61), (63, 64), (60, 67), (65, 64))  # 68, 69 upper; 70, 71 lower
OPEN_PAIRS = ((68, 70), (61, 67), (62, 66), (63, 65), (69, 71))  # (upper, lower), left to right
OUTER_FOLLOW = (  # (outer point, the inner point it follows)
    *((49, 68), (50, 61), (51, 62), (52, 63), (53, 69)),
    *((59, 70), (58, 67), (57, 66), (56, 65), (55, 71)),
)
LIPS = np.arange(48, 72)
MOUTH_UPPER = np.array([60, 68, 61, 62, 63, 69, 64])
MOUTH_LOWER = np.array([64, 71, 65, 66, 67, 70, 60])
MOUTH_OUTLINE = np.concatenate([MOUTH_UPPER, MOUTH_LOWER[1:-1]])
FACE_POINTS = 72  # the landmarks and the extra lip points; the rings follow

# Sizes in units of the distance between the eye centres ("iod"), so any photo size works.
MAX_GAP = 0.33  # inner-lip gap at open = 1: about 2 cm for a 6.3 cm eye distance
UPPER_SHARE = 0.2  # of an opening, the upper lip rises this much; the jaw does the rest
SPREAD_WIDTH = 0.10  # each corner moves out this far at spread = 1
ROUND_WIDTH = 0.14  # ... and in this far at round = 1
OPEN_NARROW = 0.05  # an open jaw pulls the corners in a little
MIN_EYE_DISTANCE = 16.0  # pixels: smaller faces have too few pixels to animate

SENTENCES: tuple[str, ...] = (
    "Good morning, and welcome to the show.",
    "Please pass me the blue cup on the top shelf.",
    "We watched the whales leap over the waves at dawn.",
    "My brother bought a big bag of bread and butter.",
    "Five vivid violets were found beside the fence.",
    "She should show the sheep where the shore is.",
    "Judge the rough edges of the bridge with care.",
    "Think of three things that make you feel thankful.",
    "How about a quiet walk around the old town?",
    "Each week we review the numbers from the previous month.",
    "Open the window wide and let the fresh air in.",
    "The puppy jumped happily into the muddy puddle.",
    "Would you like tea, coffee, or a glass of water?",
    "Our team is moving to a bigger office in May.",
    "Maybe the map is in the mailbox by the gate.",
    "Few people have visited the far valley this year.",
    "Yesterday the children played chess in the garden.",
    "The weather forecast promises sunshine all weekend.",
    "I usually have oatmeal with apples for breakfast.",
    "Measure twice, because you can only cut once.",
    "Who owns the boat moored at the end of the pier?",
    "Bright lights flashed above the busy city square.",
    "Every evening I read a chapter of a mystery novel.",
    "Put the heavy boxes on the floor, not on the table.",
    "Zebras and giraffes wander across the open plains.",
    "Remember to back up your files before the update.",
    "The museum opens at nine and closes at five.",
    "Could you explain the plan once more, step by step?",
    "Thank you very much for your patience today.",
    "A smooth voice can make a simple story memorable.",
    "Please call me back when you have a free moment.",
    "The orange moon rose slowly over the quiet bay.",
    "Nobody knew why the old clock stopped at noon.",
    "We need more paper, pens, and blue envelopes.",
    "Her favourite hobby is painting boats by the harbour.",
    "Owls hoot softly in the woods after midnight.",
    "Big problems often have surprisingly simple answers.",
    "The engineer fixed the pump with a wrench and a wire.",
    "Let us meet at the lobby by half past four.",
    "Bubbles of warm foam floated over the bathtub.",
    "Wow, what a beautiful view from up here!",
    "Is it possible to move the meeting to Monday morning?",
)
"""English sentences for training speech: varied, and rich in lip-visible sounds."""


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
        teeth, lash = _sample_colours(photo, points)
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
        _paint_mouth(region, dest[:FACE_POINTS] - (x0, y0), self.iod, self.teeth)
        _paint_lids(region, dest[:68] - (x0, y0), pose.blink, self.lash)
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


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
    return mask > 0


_DEFAULT_TEETH = np.array([200.0, 214.0, 228.0])  # BGR: slightly warm white
_DEFAULT_LASH = np.array([40.0, 45.0, 60.0])


def _sample_colours(photo: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's own teeth colour (where the mouth shows teeth) and eyelash colour."""
    shape = photo.shape[:2]
    pixels = photo[_polygon_mask(shape, points[INNER])].astype(np.float64)
    teeth = _DEFAULT_TEETH
    if len(pixels) >= 12:
        brightness = pixels.mean(axis=1)
        bright = pixels[brightness >= np.percentile(brightness, 75)]
        # Only teeth are this bright inside a mouth; a closed or dark mouth keeps the default.
        if bright.mean() > 130:
            teeth = bright.mean(axis=0)
    lash = _DEFAULT_LASH
    lids = np.concatenate([points[[36, 37, 38, 39]], points[[42, 43, 44, 45]]])
    x0, y0 = np.floor(lids.min(0)).astype(int)
    x1, y1 = np.ceil(lids.max(0)).astype(int) + 1
    band = photo[max(y0 - 1, 0) : y1 + 1, max(x0, 0) : x1].reshape(-1, 3).astype(np.float64)
    if len(band) >= 12:
        brightness = band.mean(axis=1)
        lash = band[brightness <= np.percentile(brightness, 10)].mean(axis=0)
    return teeth, lash


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


def _smooth_closed(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A closed Catmull-Rom curve through ``points`` (so the lips are not angular)."""
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(n):
        a, b, c, d = p[i - 1], p[i], p[(i + 1) % n], p[(i + 2) % n]
        out.append(
            0.5
            * (
                2 * b
                + (-a + c) * t
                + (2 * a - 5 * b + 4 * c - d) * t**2
                + (-a + 3 * b - 3 * c + d) * t**3
            )
        )
    return np.concatenate(out)


_CAVITY_TOP = np.array([50.0, 42.0, 100.0])  # BGR: dark red of the mouth's roof
_CAVITY_BOTTOM = np.array([26.0, 20.0, 48.0])  # the throat in shadow
_TONGUE = np.array([85.0, 88.0, 160.0])  # seen low in a wide-open mouth
_LIP_LINE = np.array([70.0, 62.0, 110.0])  # where closed lips meet: a soft dark line


def _soft_mask(shape: tuple[int, int], draw: Callable[[np.ndarray, int], None]) -> np.ndarray:
    """An antialiased float mask in [0, 1]: ``draw(canvas, scale)`` paints 4x larger."""
    scale = 4
    big = np.zeros((shape[0] * scale, shape[1] * scale), np.uint8)
    draw(big, scale)
    small = cv2.resize(big, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255


def _fixed(points: np.ndarray, origin: tuple[int, int], scale: int) -> np.ndarray:
    # Pixel centres of the small image sit at (i + 0.5) / scale - 0.5 of the large one.
    return np.round(((points - origin + 0.5) * scale - 0.5) * 16).astype(np.int32)


def _blend(
    region: np.ndarray, box: tuple[int, int, int, int], colour: np.ndarray, alpha: np.ndarray
) -> None:
    x0, y0, x1, y1 = box
    patch = region[y0:y1, x0:x1].astype(np.float32)
    out = patch + (np.asarray(colour, np.float32) - patch) * alpha
    region[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _clip_box(points: np.ndarray, pad: int, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(points.min(0)).astype(int) - pad
    x1, y1 = np.ceil(points.max(0)).astype(int) + pad + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _paint_mouth(region: np.ndarray, lips: np.ndarray, iod: float, teeth: np.ndarray) -> None:
    """Paint the inside of the mouth (cavity, teeth) or the closed lips' line, in place."""
    gap = float(np.mean([lips[low, 1] - lips[up, 1] for up, low in INNER_PAIRS]))
    box = _clip_box(lips[MOUTH_OUTLINE], 2, region.shape)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return
    shape = (y1 - y0, x1 - x0)
    upper = lips[MOUTH_UPPER]
    lower = lips[MOUTH_LOWER]
    line_alpha = 0.55 * float(np.clip(1 - gap / 1.5, 0, 1))
    if line_alpha > 0:
        # Closed lips press together along a thin shadowed line.
        meet = _smooth_open((upper + lower[::-1]) / 2)

        def draw_line(canvas: np.ndarray, scale: int) -> None:
            pts = _fixed(meet, (x0, y0), scale)
            cv2.polylines(canvas, [pts], False, 255, max(1, scale), cv2.LINE_AA, shift=4)

        _blend(region, box, _LIP_LINE, _soft_mask(shape, draw_line)[..., None] * line_alpha)
    if gap < 0.5:
        return
    outline = _smooth_closed(lips[MOUTH_OUTLINE], 4)

    def draw_inside(canvas: np.ndarray, scale: int) -> None:
        cv2.fillPoly(canvas, [_fixed(outline, (x0, y0), scale)], 255, cv2.LINE_AA, shift=4)

    alpha = cv2.GaussianBlur(_soft_mask(shape, draw_inside), (3, 3), 0.5)[..., None]
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    top = np.interp(xs, upper[:, 0], upper[:, 1])
    bottom = np.interp(xs, lower[::-1, 0], lower[::-1, 1])
    depth = np.clip((ys - top) / np.maximum(bottom - top, 1.0), 0, 1)[..., None]
    colour = _CAVITY_TOP + (_CAVITY_BOTTOM - _CAVITY_TOP) * depth
    tongue = float(np.clip((gap - 0.12 * iod) / (0.1 * iod), 0, 1))
    if tongue > 0:
        # The tongue's back rises from the lower lip; darker towards the corners.
        centre = (lips[60, 0] + lips[64, 0]) / 2
        across = np.clip(1 - np.abs(xs - centre) / max(lips[64, 0] - centre, 1.0), 0, 1)
        hump = np.clip((depth[..., 0] - 0.55) / 0.3, 0, 1) * across**0.8
        colour += (_TONGUE - colour) * (0.55 * tongue * hump)[..., None]
    # Teeth: the upper ones hang from the upper lip, the lower ones rise from the lower lip
    # once the mouth is wide open. Towards the corners they go back into the shadow of the
    # cheeks, and a faint darker seam shows between neighbouring teeth.
    centre_x = (lips[60, 0] + lips[64, 0]) / 2
    half_w = max((lips[64, 0] - lips[60, 0]) / 2, 1.0)
    offset = (xs - centre_x)[..., None]
    lateral = np.clip(1 - np.abs(offset) / half_w, 0, 1)
    visible = np.clip((lateral - 0.15) / 0.35, 0, 1)
    tooth_w = 0.085 * iod
    seams = 1 - 0.12 * np.abs(np.cos(np.pi * offset / tooth_w)) ** 12
    upper_h = min(0.075 * iod, 0.5 * gap)
    below_top = (ys - top)[..., None]
    upper_teeth = np.clip(upper_h - below_top + 0.5, 0, 1) * visible
    lip_shadow = 0.82 + 0.18 * np.clip(below_top / 1.5, 0, 1)
    colour += (teeth * seams * lip_shadow * (0.8 + 0.2 * lateral) - colour) * upper_teeth
    lower_h = float(np.clip(0.35 * (gap - 0.2 * iod), 0, 0.04 * iod))
    if lower_h > 0:
        lower_teeth = np.clip((ys - (bottom - lower_h))[..., None] + 0.5, 0, 1) * visible
        colour += (teeth * seams * 0.7 - colour) * lower_teeth
    _blend(region, box, colour, alpha)


def _smooth_open(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """An open Catmull-Rom curve through ``points``, ends included."""
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = [
        0.5
        * (
            2 * b
            + (-a + c) * t
            + (2 * a - 5 * b + 4 * c - d) * t**2
            + (-a + 3 * b - 3 * c + d) * t**3
        )
        for a, b, c, d in zip(p[:-3], p[1:-2], p[2:-1], p[3:], strict=True)
    ]
    return np.concatenate([*out, points[-1:]])


def _paint_lids(region: np.ndarray, points: np.ndarray, blink: float, lash: np.ndarray) -> None:
    """Draw the lash line along closing eyelids (the warp squeezes the real lashes away)."""
    strength = float(np.clip((blink - 0.3) / 0.6, 0, 1))
    if strength <= 0:
        return
    for eye in (EYE_A, EYE_B):
        lid = _smooth_open(points[eye[[0, 1, 2, 3]]])
        box = _clip_box(lid, 2, region.shape)
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            continue

        def draw(
            canvas: np.ndarray, scale: int, lid: np.ndarray = lid, o: tuple[int, int] = (x0, y0)
        ) -> None:
            pts = _fixed(lid, o, scale)
            cv2.polylines(canvas, [pts], False, 255, max(1, scale), cv2.LINE_AA, shift=4)

        alpha = _soft_mask((y1 - y0, x1 - x0), draw)[..., None] * 0.75 * strength
        _blend(region, box, lash, alpha)


# --------------------------------------------------------------------------------------------
# Life: blinks, head sway, brows


@dataclass(frozen=True)
class IdleMotion:
    """Per-frame blink (0..1), brow raise (0..1) and head (roll rad, dx, dy in iod)."""

    blink: np.ndarray
    brow: np.ndarray
    head: np.ndarray

    def pose(self, k: int, mouth: Sequence[float]) -> Pose:
        """The full pose of frame ``k`` with the given mouth shape."""
        roll, dx, dy = (float(v) for v in self.head[k])
        return Pose(
            mouth=(float(mouth[0]), float(mouth[1]), float(mouth[2])),
            blink=float(self.blink[k]),
            brow=float(self.brow[k]),
            head=(roll, dx, dy),
        )


_BLINK_SHAPE = (0.55, 1.0, 0.75, 0.35, 0.1)  # per frame: a fast close, a slower open (~160 ms)


def _wander(n: int, fps: int, rng: np.random.Generator, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Slow smooth noise in about [-1, 1]: a few sines at random low frequencies and phases."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        freq, phase = rng.uniform(lo_hz, hi_hz), rng.uniform(0, 2 * math.pi)
        out += np.sin(2 * math.pi * freq * t + phase)
    return out / 2.0


def idle_motion(
    n_frames: int, speaking: np.ndarray | None = None, seed: int = 0, fps: int = FPS
) -> IdleMotion:
    """Blinks every 2-6 s, a slow head sway and brow movement, livelier while speaking.

    ``speaking``: the mouth opening per frame (0..1), if any; talking nods the head a little.
    """
    rng = np.random.default_rng(seed)
    blink = np.zeros(n_frames)
    t = rng.uniform(0.8, 2.5)
    while True:
        k = int(t * fps)
        if k + len(_BLINK_SHAPE) > n_frames:
            break
        blink[k : k + len(_BLINK_SHAPE)] = np.maximum(
            blink[k : k + len(_BLINK_SHAPE)], _BLINK_SHAPE
        )
        t += rng.uniform(2.0, 6.0)
    energy = np.zeros(n_frames)
    if speaking is not None and len(speaking):
        # Smoothed over about half a second: phrases, not syllables, move the head.
        kernel = np.hanning(13)
        energy = np.convolve(np.asarray(speaking, float), kernel / kernel.sum(), mode="same")
    roll = math.radians(1.3) * _wander(n_frames, fps, rng, 0.05, 0.35)
    dx = 0.035 * _wander(n_frames, fps, rng, 0.04, 0.3)
    dy = 0.02 * _wander(n_frames, fps, rng, 0.08, 0.4) + 0.03 * energy
    brow = np.clip(0.35 * _wander(n_frames, fps, rng, 0.1, 0.5) + 0.8 * energy - 0.1, 0, 1)
    return IdleMotion(blink, brow, np.stack([roll, dx, dy], axis=1))


# --------------------------------------------------------------------------------------------
# The training video


@dataclass(frozen=True)
class TalkingVideo:
    """What ``render_talking_video`` wrote."""

    video: Path  # H.264 MP4 with the speech as its AAC track
    opening: Path  # float32 [frames]: the mouth opening each frame shows (landmarks measure)
    landmarks: Path  # float32 [frames, 68, 2]: where the 68 points are in each frame
    frames: int
    seconds: float


def talking_speech(
    sentences: Sequence[str],
    seconds: float,
    seed: int = 0,
    tail_sentences: Sequence[str] = (),
    tail_seconds: float = 0.0,
) -> tts.Speech:
    """At least ``seconds`` of speech: the sentences in shuffled order, with pauses between.

    With ``tail_sentences``, at least ``tail_seconds`` more follow made of those alone, so the
    end of the clip holds sentences heard nowhere before it (a fair held-out test).
    """
    if not sentences:
        raise InvalidInput("at least one sentence is needed to make the avatar talk")
    if not 0 < seconds <= 3600:
        raise InvalidInput(f"seconds must be within (0, 3600], got {seconds}")
    if tail_seconds and not tail_sentences:
        raise InvalidInput("tail_seconds needs tail_sentences to speak")
    rng = np.random.default_rng(seed)
    rate = tts.sample_rate()
    # Start and end in silence so the first and last frames show the mouth at rest.
    parts = [tts.silence(0.6, rate)]
    for pool, target in ((sentences, seconds), (tail_sentences, seconds + tail_seconds)):
        total = sum(p.duration for p in parts)
        order: list[str] = []
        while total < target:
            if not order:
                order = [pool[i] for i in rng.permutation(len(pool))]
            speech = tts.synthesize(order.pop(), length_scale=float(rng.uniform(0.92, 1.12)))
            pause = tts.silence(float(rng.uniform(0.35, 1.0)), rate)
            parts += [speech, pause]
            total += speech.duration + pause.duration
    return tts.concatenate(parts)


def render_talking_video(
    photo: np.ndarray,
    points68: np.ndarray,
    out_path: str | Path,
    sentences: Sequence[str] = SENTENCES,
    seconds: float = 180.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    tail_sentences: Sequence[str] = (),
    tail_seconds: float = 0.0,
) -> TalkingVideo:
    """Make ``photo`` speak for about ``seconds`` and write it as a 25 fps MP4 with sound.

    Beside ``out_path`` (``talk.mp4``) go ``talk.opening.npy``, the mouth opening of every frame
    as ``lipstream.avatar.landmarks.mouth_opening`` measures it on the moved landmarks (the
    ground truth for judging a model trained on the video), and ``talk.landmarks.npy``.
    ``progress(done, total)`` is called after each frame. ``tail_sentences`` and
    ``tail_seconds`` end the clip with sentences spoken nowhere before (see ``talking_speech``).
    """
    out_path = Path(out_path)
    rig = FaceRig.build(photo, points68)  # fail on a bad photo before spending time on speech
    speech = talking_speech(sentences, seconds, seed, tail_sentences, tail_seconds)
    rate = speech.audio.sample_rate
    n_frames = visemes.frame_count(speech.duration)
    # The sound is padded to exactly n_frames * 40 ms, so picture and sound end together.
    samples = np.zeros(round(n_frames * rate / FPS), np.int16)
    samples[: len(speech.audio)] = speech.audio.samples[: len(samples)]
    audio = AudioChunk(samples, rate)

    track = visemes.mouth_track(speech.phonemes, n_frames)
    idle = idle_motion(n_frames, visemes.opening(track), seed=seed)
    return _render_clip(rig, track, idle, audio, out_path, progress)


def render_idle_video(
    photo: np.ndarray, points68: np.ndarray, out_path: str | Path, seconds: float = 10.0, seed=0
) -> TalkingVideo:
    """The portrait at rest (mouth closed) with blinks and head sway: the avatar's own video.

    It is what the browser plays while nobody speaks, and the frames the model pastes mouths on.
    """
    if not 0 < seconds <= 600:
        raise InvalidInput(f"seconds must be within (0, 600], got {seconds}")
    rig = FaceRig.build(photo, points68)
    n_frames = visemes.frame_count(seconds)
    track = np.tile(np.asarray(visemes.REST, np.float32), (n_frames, 1))
    audio = AudioChunk(np.zeros(n_frames * AUDIO_RATE // FPS, np.int16), AUDIO_RATE)
    return _render_clip(rig, track, idle_motion(n_frames, seed=seed), audio, Path(out_path), None)


def _render_clip(
    rig: FaceRig,
    track: np.ndarray,
    idle: IdleMotion,
    audio: AudioChunk,
    out_path: Path,
    progress: Callable[[int, int], None] | None,
) -> TalkingVideo:
    n_frames = len(track)
    height, width = rig.photo.shape[:2]
    opening = np.zeros(n_frames, np.float32)
    landmarks = np.zeros((n_frames, 68, 2), np.float32)
    writer = Mp4Writer(out_path, width, height, FPS, audio_rate=audio.sample_rate)
    try:
        for k in range(n_frames):
            frame, points = rig.render(idle.pose(k, track[k]))
            writer.write(frame)
            landmarks[k] = points
            opening[k] = mouth_opening(points)
            if progress is not None:
                progress(k + 1, n_frames)
        writer.write_audio(audio)
        writer.close()
    except BaseException:
        writer.abort()
        out_path.unlink(missing_ok=True)
        raise
    stem = out_path.with_suffix("")
    opening_path = stem.with_name(stem.name + ".opening.npy")
    landmarks_path = stem.with_name(stem.name + ".landmarks.npy")
    np.save(opening_path, opening)
    np.save(landmarks_path, landmarks)
    return TalkingVideo(out_path, opening_path, landmarks_path, n_frames, n_frames / FPS)
