"""Model packages: one folder per avatar with its network weights, face crops and video.

The format is documented in ``docs/model-package.md``. This module reads and validates
packages (``load_package``) and finds them in a models folder (``scan_packages``,
``list_packages``); ``package_writer`` writes them, and ``package_weights`` holds the rules for
their weights files. It needs no PyTorch, so a server that runs ONNX models can load packages
too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import av
import cv2
import numpy as np
import simplejpeg

from lipstream.audio.timeline import FPS, SYNCTALK2D, FeatureLayout
from lipstream.audio.timeline import SAMPLE_RATE as FEATURE_RATE
from lipstream.errors import InvalidInput, PackageError
from lipstream.geometry import (
    CROP_SIZE,
    INNER_OFFSET,
    NETWORK_SIZE,
    CropBox,
    MaskRect,
    inner,
)
from lipstream.manifest import (
    MISSING,
    ManifestReader,
    check_file,
    check_wav,
    is_finite_number,
    is_int,
    show,
)
from lipstream.model.package_weights import (
    WEIGHT_ROLES,
    check_weights,
    family_complete,
    split_weight_key,
)

FORMAT = "lipstream-model-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARCHITECTURE = "synctalk2d-unet328"
AUDIO_FEATURES = "ave"
AUDIO_SAMPLE_RATE = FEATURE_RATE
CROPS_DIR = "crops"
VIDEO_FILE = "video.mp4"
SPEECH_FILE = "speech.wav"

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

FRAME_FORMATS: Mapping[str, str] = MappingProxyType({"jpeg": ".jpg", "png": ".png"})
JPEG_QUALITY = 95


def lookahead_frames(lookahead_ms: float, fps: int = FPS) -> int:
    """Frames past frame k whose audio frame k waits for: ``ceil(lookahead_ms * fps / 1000) - 1``.

    The newest sample frame k needs lies inside the 40 ms of frame ``k + lookahead_frames``
    (452.5 ms -> 11: frame k is ready during frame k + 11's audio).
    """
    return max(0, math.ceil(lookahead_ms * fps / 1000.0 - 1e-9) - 1)


def check_name(name: str) -> str:
    """``name`` if it is a valid package name (it becomes a folder name), else InvalidInput."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"package name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


# --------------------------------------------------------------------------------------------
# The loaded package


@dataclass(frozen=True, eq=False)
class ModelPackage:
    """A validated model package; paths are absolute, arrays read-only."""

    path: Path
    name: str
    version: str
    fps: int
    generator_width: float
    lookahead_ms: float
    lookahead_frames: int
    layout: FeatureLayout  # which feature rows a frame reads: its lookahead follows from it
    frame_count: int
    bounds: np.ndarray  # int32 [frame_count, 4]: xmin, ymin, xmax, ymax in video pixels
    mask: MaskRect
    crops_dir: Path
    frame_format: str
    video_path: Path
    video_width: int
    video_height: int
    weight_files: Mapping[str, Path]  # "family.role" -> file
    speech_path: Path | None  # 16 kHz mono PCM16 WAV of the avatar's speech, if shipped
    metrics: Mapping[str, float]
    source: Mapping[str, Any]
    manifest: Mapping[str, Any] = field(repr=False)

    @property
    def weight_families(self) -> tuple[str, ...]:
        """The runtime families this package can run on (``"pytorch"``, ``"onnx"``)."""
        return tuple(f for f in WEIGHT_ROLES if family_complete(f, self.weight_files))

    def weights(self, key: str) -> Path | None:
        """The weights file stored under ``key`` (e.g. ``"onnx.generator_int8"``), if any."""
        split_weight_key(key)
        return self.weight_files.get(key)

    def box(self, index: int) -> CropBox:
        """The crop box of frame ``index``."""
        return CropBox.from_bounds(self.bounds[self._index(index)])

    def crop_path(self, index: int) -> Path:
        """The file holding the 328x328 crop of frame ``index``."""
        return self.crops_dir / crop_filename(self._index(index), self.frame_format)

    def load_crop(self, index: int) -> np.ndarray:
        """The 328x328 BGR crop of frame ``index`` as uint8 [328, 328, 3]."""
        return _decode_crop(self.crop_path(index))

    def load_crops(self) -> np.ndarray:
        """Every crop as uint8 [frame_count, 328, 328, 3], BGR."""
        out = np.empty((self.frame_count, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        for i in range(self.frame_count):
            out[i] = self.load_crop(i)
        return out

    def load_inner_crops(self) -> np.ndarray:
        """Every crop's network region as uint8 [frame_count, 320, 320, 3], BGR, contiguous."""
        return np.ascontiguousarray(inner(self.load_crops()))

    def _index(self, index: int) -> int:
        if not 0 <= index < self.frame_count:
            raise InvalidInput(
                f"frame index {index} is outside 0..{self.frame_count - 1} of package {self.name}"
            )
        return index


def crop_filename(index: int, frame_format: str = "jpeg") -> str:
    """The name of frame ``index``'s crop inside the crops folder, e.g. ``000007.jpg``."""
    return f"{index:06d}{FRAME_FORMATS[frame_format]}"


def encode_crop(crop: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR crop as the JPEG file packages and datasets store (4:2:0 chroma)."""
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(crop), quality=quality, colorspace="BGR", colorsubsampling="420"
    )


def _decode_crop(path: Path) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PackageError(f"cannot read crop {path}: {exc}") from exc
    try:
        if path.suffix == ".jpg":
            img = simplejpeg.decode_jpeg(data, colorspace="BGR")
        else:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except ValueError as exc:
        raise PackageError(f"crop {path} does not decode: {exc}") from exc
    if img is None or img.shape != (CROP_SIZE, CROP_SIZE, 3):
        got = "nothing" if img is None else "x".join(map(str, img.shape))
        raise PackageError(f"crop {path} must decode to {CROP_SIZE}x{CROP_SIZE}x3, got {got}")
    return img


# --------------------------------------------------------------------------------------------
# Validation


class InvalidPackage(PackageError):
    """A package failed validation; ``problems`` lists every problem found, one per entry."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"model package {path} is invalid ({count}):\n{lines}")


def _check_bounds(
    reader: ManifestReader, count: Any, video_w: Any, video_h: Any
) -> np.ndarray | None:
    raw = reader.get("frames.bounds")
    if raw is MISSING:
        return None
    if not isinstance(raw, list):
        reader.problem(f"frames.bounds must be a list of [xmin, ymin, xmax, ymax], got {show(raw)}")
        return None
    bad = [
        i
        for i, row in enumerate(raw)
        if not (isinstance(row, list) and len(row) == 4 and all(is_int(v) for v in row))
    ]
    if bad:
        reader.problem(
            f"frames.bounds[{bad[0]}] must be 4 integers [xmin, ymin, xmax, ymax], "
            f"got {show(raw[bad[0]])}" + (f" ({len(bad) - 1} more like it)" if len(bad) > 1 else "")
        )
        return None
    bounds = np.asarray(raw, dtype=np.int64).reshape(-1, 4)
    if count is not MISSING and len(bounds) != count:
        reader.problem(f"frames.bounds has {len(bounds)} boxes but frames.count is {count}")
    for i, (x0, y0, x1, y1) in enumerate(bounds.tolist()):
        outside = x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0
        if not outside and video_w is not MISSING and video_h is not MISSING:
            outside = x1 > video_w or y1 > video_h
        if outside:
            reader.problem(
                f"frames.bounds[{i}] {[x0, y0, x1, y1]} is not a box inside the "
                f"{video_w}x{video_h} video"
            )
            break
    return bounds.astype(np.int32)


def _check_crops(reader: ManifestReader, crops_dir: Any, count: Any, frame_format: Any) -> None:
    if crops_dir is MISSING or frame_format is MISSING:
        return
    if not crops_dir.is_dir():
        reader.problems.append(f"frames.dir: folder {crops_dir.name}/ is missing")
        return
    suffix = FRAME_FORMATS[frame_format]
    present = {p.name for p in crops_dir.iterdir() if p.suffix == suffix}
    if count is MISSING:
        return
    wanted = [crop_filename(i, frame_format) for i in range(count)]
    missing = [n for n in wanted if n not in present]
    empty = [n for n in wanted if n in present and (crops_dir / n).stat().st_size == 0]
    for label, names in (("missing", missing), ("empty", empty)):
        if names:
            shown = ", ".join(f"{crops_dir.name}/{n}" for n in names[:5])
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            reader.problems.append(f"frames: crop {shown}{more} {label}")
    extra = len(present - set(wanted))
    if extra:
        reader.problems.append(
            f"frames: {crops_dir.name}/ holds {extra} crop file(s) beyond frames.count {count}"
        )


def _check_video(reader: ManifestReader, path: Any, width: Any, height: Any, count: Any) -> None:
    if path is MISSING or not check_file(path, "video.file", reader.problems):
        return
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                reader.problems.append(f"video.file: {path.name} has no video stream")
                return
            stream = container.streams.video[0]
            got_w, got_h, got_n = (
                stream.codec_context.width,
                stream.codec_context.height,
                stream.frames,
            )
    except av.FFmpegError as exc:
        reader.problems.append(f"video.file: {path.name} cannot be read: {exc}")
        return
    if width is not MISSING and height is not MISSING and (got_w, got_h) != (width, height):
        reader.problems.append(
            f"video.file: {path.name} is {got_w}x{got_h}, the manifest says {width}x{height}"
        )
    # Some containers do not record a frame count (0); mp4 does.
    if got_n and count is not MISSING and got_n != count:
        reader.problems.append(
            f"video.file: {path.name} has {got_n} frames, video.frame_count says {count}"
        )


def load_package(path: str | Path) -> ModelPackage:
    """Read and validate a package folder; raise InvalidPackage listing every problem found."""
    root = Path(path).resolve()
    problems: list[str] = []
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise InvalidPackage(root, [f"{root} is not a folder"])
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidPackage(root, [f"{MANIFEST} is missing"]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPackage(root, [f"{MANIFEST} is not valid JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise InvalidPackage(root, [f"{MANIFEST} must hold a JSON object, got {show(data)}"])

    r = ManifestReader(data, problems, prefix=f"{MANIFEST}: ", folder="the package")
    if r.const("format", FORMAT) is MISSING:
        # Another kind of file: the remaining checks would only add noise.
        raise InvalidPackage(root, problems)
    version = r.get("format_version")
    if version is not MISSING and (not is_int(version) or version != FORMAT_VERSION):
        r.problem(
            f"format_version must be {FORMAT_VERSION} (the version this lipstream reads), "
            f"got {show(version)}"
        )
    name = r.string("name", NAME_PATTERN, "1-64 letters, digits, '_', '.' or '-'")
    pkg_version = r.string("version")
    fps = r.const("fps", FPS)
    r.const("generator.architecture", ARCHITECTURE)
    width = r.number("generator.width", 0.0, 1.0)
    r.const("audio.features", AUDIO_FEATURES)
    r.const("audio.sample_rate", AUDIO_SAMPLE_RATE)
    look_ms = r.number("audio.lookahead_ms")
    look_frames = r.integer("audio.lookahead_frames", minimum=0)
    layout = SYNCTALK2D  # packages without audio.layout have SyncTalk_2D's
    layout_data = r.get("audio.layout", required=False)
    if layout_data is not MISSING:
        try:
            layout = FeatureLayout.from_dict(layout_data)
        except InvalidInput as exc:
            r.problem(str(exc))
    if look_ms is not MISSING and abs(look_ms - layout.lookahead_ms) > 1e-6:
        r.problem(
            f"audio.lookahead_ms must be {layout.lookahead_ms:g}, the lookahead of the feature "
            f"layout ({layout.describe()}), got {show(look_ms)}"
        )
    if look_ms is not MISSING and look_frames is not MISSING:
        expected = lookahead_frames(look_ms)
        if look_frames != expected:
            r.problem(
                f"audio.lookahead_frames must be ceil(lookahead_ms * fps / 1000) - 1 = {expected}, "
                f"got {look_frames}"
            )
    r.const("crop.crop_size", CROP_SIZE)
    r.const("crop.inner_offset", INNER_OFFSET)
    r.const("crop.network_size", NETWORK_SIZE)
    mask_fields = [r.integer(f"crop.mask.{k}", minimum=0) for k in ("x", "y", "width", "height")]
    mask: MaskRect | None = None
    if MISSING not in mask_fields:
        try:
            mask = MaskRect(*mask_fields)
        except InvalidInput as exc:
            r.problem(f"crop.mask: {exc}")

    count = r.integer("frames.count")
    crops_dir = r.relpath(root, "frames.dir")
    frame_format = r.get("frames.format")
    if frame_format is not MISSING and frame_format not in FRAME_FORMATS:
        r.problem(
            f"frames.format must be one of {', '.join(FRAME_FORMATS)}, got {show(frame_format)}"
        )
        frame_format = MISSING

    video_path = r.relpath(root, "video.file")
    video_w = r.integer("video.width")
    video_h = r.integer("video.height")
    video_n = r.integer("video.frame_count")
    r.const("video.fps", FPS)
    if video_n is not MISSING and count is not MISSING and video_n != count:
        r.problem(f"video.frame_count {video_n} must equal frames.count {count}")
    bounds = _check_bounds(r, count, video_w, video_h)

    metrics = r.get("metrics", required=False)
    if metrics is MISSING:
        metrics = {}
    elif not isinstance(metrics, dict) or not all(is_finite_number(v) for v in metrics.values()):
        r.problem(f"metrics must be an object of numbers, got {show(metrics)}")
        metrics = {}
    source = r.get("source", required=False)
    if source is MISSING:
        source = {}
    elif not isinstance(source, dict):
        r.problem(f"source must be an object, got {show(source)}")
        source = {}

    speech_path = None
    if r.get("audio.speech_file", required=False) is not MISSING:
        speech_path = r.relpath(root, "audio.speech_file")
        if speech_path is MISSING or (
            check_wav(speech_path, "audio.speech_file", problems, AUDIO_SAMPLE_RATE) is None
        ):
            speech_path = None
    weight_files = check_weights(r, root, width)
    _check_crops(r, crops_dir, count, frame_format)
    _check_video(r, video_path, video_w, video_h, video_n)

    if problems:
        raise InvalidPackage(root, problems)
    assert bounds is not None and mask is not None  # guaranteed when no problem was recorded
    return ModelPackage(
        path=root,
        name=name,
        version=pkg_version,
        fps=fps if fps is not MISSING else FPS,
        generator_width=width,
        lookahead_ms=look_ms,
        lookahead_frames=look_frames,
        layout=layout,
        frame_count=count,
        bounds=_read_only(bounds),
        mask=mask,
        crops_dir=crops_dir,
        frame_format=frame_format,
        video_path=video_path,
        video_width=video_w,
        video_height=video_h,
        weight_files=MappingProxyType(weight_files),
        speech_path=speech_path,
        metrics=MappingProxyType(dict(metrics)),
        source=MappingProxyType(dict(source)),
        manifest=MappingProxyType(data),
    )


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# --------------------------------------------------------------------------------------------
# Finding the packages of a models folder


class PackageScan(NamedTuple):
    """What ``list_packages`` found: the valid packages and, per folder name, why others fail."""

    packages: tuple[ModelPackage, ...]
    errors: Mapping[str, str]


def scan_packages(models_dir: str | Path) -> list[Path]:
    """The folders of ``models_dir`` that may hold a package: its subfolders, sorted by name.

    Hidden folders (such as a writer's temporary ``.alice.*.partial``) are skipped; a
    ``models_dir`` that is not a folder holds none. Every reader of a models folder (the
    ``models`` command, the lip-sync service's registry, the web server's catalog) finds its
    packages here, so all agree on which folders are packages.
    """
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def name_mismatch(folder: Path, manifest_name: str) -> str:
    """Why a package served from ``folder`` is refused: one package has one name everywhere."""
    return (
        f"model package {folder} is named {manifest_name!r} in its {MANIFEST} but lies in folder "
        f"{folder.name!r}; a package is served under one name, so rename the folder to "
        f"{manifest_name!r} or set the manifest's name to {folder.name!r}"
    )


def list_packages(models_dir: str | Path) -> PackageScan:
    """Every package of ``models_dir`` loaded, sorted by name, and why the others are not usable.

    A package's name is its folder's name (a folder whose manifest says another is refused), so
    no two packages share a name.
    """
    packages: list[ModelPackage] = []
    errors: dict[str, str] = {}
    for folder in scan_packages(models_dir):
        try:
            pkg = load_package(folder)
        except PackageError as exc:
            errors[folder.name] = str(exc)
            continue
        if pkg.name != folder.name:
            errors[folder.name] = name_mismatch(folder, pkg.name)
            continue
        packages.append(pkg)
    return PackageScan(tuple(packages), MappingProxyType(errors))
