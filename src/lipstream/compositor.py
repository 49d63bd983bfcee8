"""Full avatar frames on the server: a mouth pasted into the frame it was made for.

The browser console composites on its own canvas (``console/face_compositor.js``); everything
that sends or writes whole frames (``lipstream render``, and any server-side video output)
composites here, with the same geometry and the same feathered blend:

- frame ``frame_id`` of the package's video, optionally scaled;
- the 320x320 mouth resized into the frame's ``bounds`` (the package's crop box, video pixels),
  its border faded into the frame through a smoothstep ramp ``FEATHER`` of the box's shorter
  side wide, so that no square seam shows;
- no mouth: the avatar's own frame (idle).

The video is decoded once per package and scale, kept in memory as read-only arrays and shared
by every compositor (``FrameCache``, bounded in bytes). Compositing is numpy and OpenCV work
that releases the GIL; ``compose_async`` runs it on a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from lipstream.errors import InvalidInput, PackageError
from lipstream.geometry import NETWORK_SIZE
from lipstream.model.package import ModelPackage
from lipstream.video import read_video_frames

FEATHER = 0.14  # width of the fade, as a fraction of the box's shorter side (as the console)
DEFAULT_CACHE_BYTES = 2 * 1024**3  # decoded avatar videos kept at once, all packages together
COLOR_ORDERS = ("BGR", "RGB")  # OpenCV's, and that of video and WebRTC libraries


@lru_cache(maxsize=64)
def feather_mask(width: int, height: int) -> np.ndarray:
    """Alpha float32 [height, width, 1]: 1 inside, falling smoothly to 0 toward every edge."""
    fade = max(2.0, FEATHER * min(width, height))

    def ramp(n: int) -> np.ndarray:
        centres = np.arange(n, dtype=np.float32) + 0.5
        t = np.clip(np.minimum(centres, n - centres) / fade, 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)  # smoothstep: no visible edge where the fade begins

    mask = ramp(height)[:, None] * ramp(width)[None, :]
    mask = np.ascontiguousarray(mask[:, :, None], dtype=np.float32)
    mask.flags.writeable = False
    return mask


@dataclass(frozen=True)
class AvatarFrames:
    """A package's video decoded: uint8 [N, H, W, 3] in ``order`` ("BGR" or "RGB"),
    read-only, at ``scale``."""

    frames: np.ndarray
    scale: float
    order: str = "BGR"

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)


def decode_avatar_video(
    package: ModelPackage, scale: float = 1.0, order: str = "BGR"
) -> AvatarFrames:
    """Every frame of ``package``'s video, resized by ``scale`` (0 < scale <= 4)."""
    video = decode_video(package.video_path, scale, max_frames=package.frame_count, order=order)
    if len(video.frames) != package.frame_count:
        raise PackageError(
            f"{package.video_path} holds {len(video.frames)} frames, "
            f"the package {package.frame_count}"
        )
    return video


def decode_video(
    path: str | Path, scale: float = 1.0, max_frames: int = 100_000, order: str = "BGR"
) -> AvatarFrames:
    """Every frame of the video file at ``path`` (an avatar's own video, for instance as a
    client fetched it from the web server), resized by ``scale`` (0 < scale <= 4), its
    colours in ``order``: "BGR" (OpenCV's) or "RGB" (what video and WebRTC libraries take)."""
    if not 0 < scale <= 4:
        raise InvalidInput(f"scale must be in (0, 4], got {scale}")
    if order not in COLOR_ORDERS:
        raise InvalidInput(f"order must be one of {', '.join(COLOR_ORDERS)}, got {order!r}")
    frames: list[np.ndarray] = []
    for frame in read_video_frames(path):
        if len(frames) == max_frames:
            raise PackageError(f"{path} holds more frames than the {max_frames} expected")
        if scale != 1.0:
            height, width = frame.shape[:2]
            size = (max(2, round(width * scale)), max(2, round(height * scale)))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            frame = cv2.resize(frame, size, interpolation=interpolation)
        if order == "RGB":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        frames.append(frame)
    if not frames:
        raise InvalidInput(f"{path} holds no video frames")
    stacked = np.stack(frames)
    stacked.flags.writeable = False
    return AvatarFrames(stacked, scale, order)


class FrameCache:
    """Decoded avatar videos shared by every compositor, at most ``max_bytes`` kept at once.

    The least recently used video is dropped first; compositors that hold it keep using it,
    so the bound is on what the cache keeps, and a video in use is decoded once however many
    sessions show it.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Path, float, str], AvatarFrames] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[Path, float, str], threading.Lock] = {}

    def get(self, package: ModelPackage, scale: float = 1.0, order: str = "BGR") -> AvatarFrames:
        key = (package.video_path, float(scale), order)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one decode per video, however many ask at once
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            try:
                frames = decode_avatar_video(package, scale, order)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._entries[key] = frames
                while len(self._entries) > 1 and self.nbytes > self.max_bytes:
                    self._entries.popitem(last=False)
            return frames

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


SHARED_FRAMES = FrameCache()


class Compositor:
    """Full frames of one package: its own frames when idle, with the mouth while speaking."""

    def __init__(
        self,
        package: ModelPackage | None,
        *,
        scale: float = 1.0,
        blend: bool = True,
        cache: FrameCache | None = None,
        video: AvatarFrames | None = None,
        name: str | None = None,
        order: str = "BGR",
    ) -> None:
        """``video``: frames decoded elsewhere (at their ``scale``, in their colour order)
        instead of the cache's. Without a ``package`` (a client holding only the avatar's
        video), ``video`` is needed and every ``compose`` with a mouth needs its ``bounds``.
        ``order``: the colour order of the frames made, "BGR" or "RGB" (with a ``video``, its
        own)."""
        self.package = package
        self.blend = blend
        self.name = name or (package.name if package is not None else "avatar")
        if video is None:
            if package is None:
                raise ValueError("a compositor needs a package or the avatar's decoded video")
            video = (SHARED_FRAMES if cache is None else cache).get(package, scale, order)
        self._video = video

    @property
    def order(self) -> str:
        """The colour order of every frame made, and of a mouth given as an array."""
        return self._video.order

    @property
    def frame_count(self) -> int:
        return len(self._video.frames)

    @property
    def width(self) -> int:
        return self._video.width

    @property
    def height(self) -> int:
        return self._video.height

    def idle(self, frame_id: int) -> np.ndarray:
        """The avatar's own frame ``frame_id`` (read-only: copy it to draw on it)."""
        return self._video.frames[self._check(frame_id)]

    def compose(
        self,
        frame_id: int,
        mouth: np.ndarray | bytes | None,
        bounds: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray:
        """Frame ``frame_id`` with ``mouth`` (uint8 [320, 320, 3] in ``order``, or its JPEG)
        resized into ``bounds`` (video pixels; default: the package's box for the frame). A new
        array; ``mouth=None`` gives the idle frame itself."""
        frame = self.idle(frame_id)
        if mouth is None:
            return frame
        image = decode_mouth(mouth, self.order)
        if bounds is None:
            if self.package is None:
                raise InvalidInput("a mouth needs its bounds: this compositor has no package")
            bounds = self.package.bounds[frame_id]
        box = self._box(bounds)
        out = frame.copy()
        if box is None:
            return out
        left, top, right, bottom = box
        w, h = right - left, bottom - top
        interpolation = cv2.INTER_AREA if w < NETWORK_SIZE else cv2.INTER_CUBIC
        patch = cv2.resize(image, (w, h), interpolation=interpolation)
        if not self.blend:
            out[top:bottom, left:right] = patch
            return out
        under = out[top:bottom, left:right].astype(np.float32)
        mixed = under + (patch.astype(np.float32) - under) * feather_mask(w, h)
        out[top:bottom, left:right] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        return out

    async def compose_async(
        self,
        frame_id: int,
        mouth: np.ndarray | bytes | None,
        bounds: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray:
        """``compose`` on a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.compose, frame_id, mouth, bounds)

    def _check(self, frame_id: int) -> int:
        count = len(self._video.frames)
        if not 0 <= frame_id < count:
            raise InvalidInput(
                f"frame_id {frame_id} is outside 0..{count - 1} of model {self.name}"
            )
        return frame_id

    def _box(self, bounds: Sequence[float]) -> tuple[int, int, int, int] | None:
        """``bounds`` times the scale, rounded and clipped to the frame; None under 2 px."""
        if len(bounds) != 4:
            raise InvalidInput(f"bounds must be [xmin, ymin, xmax, ymax], got {bounds!r}")
        s = self._video.scale
        x0, y0 = max(0, round(bounds[0] * s)), max(0, round(bounds[1] * s))
        x1, y1 = min(self.width, round(bounds[2] * s)), min(self.height, round(bounds[3] * s))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return x0, y0, x1, y1


def decode_mouth(mouth: np.ndarray | bytes, order: str = "BGR") -> np.ndarray:
    """A mouth as uint8 [320, 320, 3] in colour ``order``, from the array itself (taken to be
    in that order) or its JPEG."""
    if isinstance(mouth, bytes | bytearray | memoryview):
        try:
            image = simplejpeg.decode_jpeg(bytes(mouth), colorspace=order)
        except ValueError:
            raise InvalidInput("the mouth is not a JPEG image that can be decoded") from None
    else:
        image = mouth
    if image.shape != (NETWORK_SIZE, NETWORK_SIZE, 3) or image.dtype != np.uint8:
        raise InvalidInput(
            f"a mouth is uint8 [{NETWORK_SIZE}, {NETWORK_SIZE}, 3], got {image.dtype} {image.shape}"
        )
    return image
