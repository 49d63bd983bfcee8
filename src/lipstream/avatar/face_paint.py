"""Painting what a warped portrait cannot show: the inside of the mouth and closing eyelids.

A face rig (``face_rig``) only moves the photo's pixels, so an opening mouth would stretch the
lips over nothing and closing lids would squeeze the lashes away. After each warp the painter
draws, antialiased, into the warped head region:

- inside the inner lips: a dark red cavity, upper teeth hanging from the upper lip, lower teeth
  and the tongue's back when the mouth is wide open; where closed lips meet, a soft dark line;
- along closing eyelids: the lash line.

Teeth and lashes take the photo's own colours where it shows them (``sample_colours``).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from lipstream.avatar.face_layout import (
    EYE_A,
    EYE_B,
    INNER,
    INNER_PAIRS,
    MOUTH_LOWER,
    MOUTH_OUTLINE,
    MOUTH_UPPER,
)

_DEFAULT_TEETH = np.array([200.0, 214.0, 228.0])  # BGR: slightly warm white
_DEFAULT_LASH = np.array([40.0, 45.0, 60.0])
_CAVITY_TOP = np.array([50.0, 42.0, 100.0])  # BGR: dark red of the mouth's roof
_CAVITY_BOTTOM = np.array([26.0, 20.0, 48.0])  # the throat in shadow
_TONGUE = np.array([85.0, 88.0, 160.0])  # seen low in a wide-open mouth
_LIP_LINE = np.array([70.0, 62.0, 110.0])  # where closed lips meet: a soft dark line


def sample_colours(photo: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
    return mask > 0


def paint_mouth(region: np.ndarray, lips: np.ndarray, iod: float, teeth: np.ndarray) -> None:
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


def paint_lids(region: np.ndarray, points: np.ndarray, blink: float, lash: np.ndarray) -> None:
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


def _smooth_closed(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A closed Catmull-Rom curve through ``points`` (so the lips are not angular)."""
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    return np.concatenate(
        [_catmull_rom(p[i - 1], p[i], p[(i + 1) % n], p[(i + 2) % n], t) for i in range(n)]
    )


def _smooth_open(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """An open Catmull-Rom curve through ``points``, ends included."""
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = [
        _catmull_rom(a, b, c, d, t)
        for a, b, c, d in zip(p[:-3], p[1:-2], p[2:-1], p[3:], strict=True)
    ]
    return np.concatenate([*out, points[-1:]])


def _catmull_rom(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Points of the segment from ``b`` to ``c`` at parameters ``t`` [n, 1] in [0, 1)."""
    return 0.5 * (
        2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3
    )
