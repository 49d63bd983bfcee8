"""Model packages: one folder per avatar with its network weights, face crops and video.

The format is documented in ``docs/model-package.md``. This module reads, validates and writes
packages; it needs no PyTorch, so a server that runs ONNX models can load packages too.
"""

from __future__ import annotations

import json
import math
import re
import struct
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, NamedTuple

import av
import cv2
import numpy as np
import simplejpeg

from lipstream.audio.timeline import LOOKAHEAD_MS
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

FORMAT = "lipstream-model-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARCHITECTURE = "synctalk2d-unet328"
AUDIO_FEATURES = "ave"
AUDIO_SAMPLE_RATE = FEATURE_RATE
FPS = 25
CROPS_DIR = "crops"
VIDEO_FILE = "video.mp4"
SPEECH_FILE = "speech.wav"

# Newest audio needed for frame k, in ms after the start of frame k, with AVE features.
AVE_LOOKAHEAD_MS = LOOKAHEAD_MS

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

FRAME_FORMATS: Mapping[str, str] = MappingProxyType({"jpeg": ".jpg", "png": ".png"})
JPEG_QUALITY = 95

# Runtime families and the files each may hold; a family is usable when it holds a generator and
# an audio encoder. Keys are written "family.role", e.g. "onnx.generator_int8".
WEIGHT_ROLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "pytorch": ("generator", "audio_encoder"),
        "onnx": ("generator_fp32", "generator_int8", "audio_encoder"),
    }
)
WEIGHT_SUFFIX: Mapping[str, str] = MappingProxyType({"pytorch": ".safetensors", "onnx": ".onnx"})

# The generator key whose first dimension is 32 channels scaled by the width
# (GeneratorConfig.channels: max(4, round(32 * width))); used to check generator.width.
_WIDTH_PROBE = "inc.inconv.0.conv.6.weight"


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


def weight_filename(key: str) -> str:
    """The file name a package gives the weights stored under ``key`` (``family.role``)."""
    family, role = split_weight_key(key)
    return f"{role}{WEIGHT_SUFFIX[family]}"


def split_weight_key(key: str) -> tuple[str, str]:
    family, _, role = key.partition(".")
    if family not in WEIGHT_ROLES or role not in WEIGHT_ROLES[family]:
        known = ", ".join(f"{f}.{r}" for f, roles in WEIGHT_ROLES.items() for r in roles)
        raise InvalidInput(f"unknown weights key {key!r}; known keys: {known}")
    return family, role


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
    def runtimes(self) -> tuple[str, ...]:
        """The runtime families this package can run on (``"pytorch"``, ``"onnx"``)."""
        return tuple(f for f in WEIGHT_ROLES if _family_complete(f, self.weight_files))

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


def _family_complete(family: str, files: Mapping[str, Path | str]) -> bool:
    has = {key.partition(".")[2] for key in files if key.startswith(family + ".")}
    if family == "onnx":
        return "audio_encoder" in has and bool(has & {"generator_fp32", "generator_int8"})
    return set(WEIGHT_ROLES[family]) <= has


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


_MISSING = object()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


class _ManifestReader:
    """Typed field access on the manifest that records a problem per bad or missing field."""

    def __init__(self, data: Any, problems: list[str]):
        self.data = data
        self.problems = problems
        self._reported: set[str] = set()

    def problem(self, text: str) -> None:
        self.problems.append(f"{MANIFEST}: {text}")

    def get(self, path: str, required: bool = True) -> Any:
        node = self.data
        parts = path.split(".")
        for depth, part in enumerate(parts):
            here = ".".join(parts[: depth + 1])
            if not isinstance(node, dict):
                parent = ".".join(parts[:depth])
                if parent not in self._reported:
                    self._reported.add(parent)
                    self.problem(f"{parent} must be an object, got {_show(node)}")
                return _MISSING
            if part not in node:
                if required and here not in self._reported:
                    self._reported.add(here)
                    self.problem(f"{here} is missing")
                return _MISSING
            node = node[part]
        return node

    def const(self, path: str, expected: Any) -> Any:
        value = self.get(path)
        if value is not _MISSING and (value != expected or type(value) is not type(expected)):
            self.problem(f"{path} must be {expected!r}, got {_show(value)}")
            return _MISSING
        return value

    def string(self, path: str, pattern: re.Pattern[str] | None = None, what: str = "") -> Any:
        value = self.get(path)
        if value is _MISSING:
            return value
        if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
            self.problem(f"{path} must be {what or 'a non-empty string'}, got {_show(value)}")
            return _MISSING
        return value

    def integer(self, path: str, minimum: int = 1) -> Any:
        value = self.get(path)
        if value is _MISSING:
            return value
        if not _is_int(value) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.problem(f"{path} must be {kind}, got {_show(value)}")
            return _MISSING
        return value

    def number(self, path: str, low: float = 0.0, high: float | None = None) -> Any:
        value = self.get(path)
        if value is _MISSING:
            return value
        if not is_finite_number(value) or value <= low or (high is not None and value > high):
            kind = "a positive number" if high is None else f"a number in ({low:g}, {high:g}]"
            self.problem(f"{path} must be {kind}, got {_show(value)}")
            return _MISSING
        return float(value)

    def relpath(self, root: Path, path: str) -> Any:
        """A file path inside the package; absolute paths and '..' are refused."""
        value = self.string(path, what="a relative path inside the package")
        if value is _MISSING:
            return value
        pure = PurePosixPath(value)
        if pure.is_absolute() or ".." in pure.parts or "\\" in value:
            self.problem(f"{path} must be a relative path inside the package, got {_show(value)}")
            return _MISSING
        return root / pure


def _check_file(path: Path, label: str, problems: list[str]) -> bool:
    """Whether ``path`` is a non-empty regular file, recording a problem otherwise."""
    if not path.is_file():
        problems.append(f"{label}: {path.name} is missing")
        return False
    if path.stat().st_size == 0:
        problems.append(f"{label}: {path.name} is empty")
        return False
    return True


def _check_speech(path: Path, problems: list[str]) -> bool:
    """Whether ``path`` is a 16 kHz mono PCM16 WAV file, recording a problem otherwise."""
    label = "audio.speech_file"
    if not _check_file(path, label, problems):
        return False
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
    except (wave.Error, EOFError, OSError) as exc:
        problems.append(f"{label}: {path.name} is not a readable WAV file ({exc})")
        return False
    if shape != (AUDIO_SAMPLE_RATE, 1, 2):
        problems.append(
            f"{label}: {path.name} must be {AUDIO_SAMPLE_RATE} Hz mono 16-bit PCM, got "
            f"{shape[0]} Hz, {shape[1]} channel(s), {8 * shape[2]}-bit"
        )
        return False
    return True


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a ``.safetensors`` file, checked against the file size.

    Reads only the header, so it is cheap for any file size; raises PackageError naming the
    problem when the file is not a complete safetensors file.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise PackageError(f"{path.name} is not a safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8 or header_len > 100_000_000:
            raise PackageError(
                f"{path.name} is truncated or not a safetensors file "
                f"(header of {header_len} bytes in a {size}-byte file)"
            )
        try:
            header = json.loads(fh.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PackageError(f"{path.name} has a malformed safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise PackageError(f"{path.name} has a malformed safetensors header")
    data_len = size - 8 - header_len
    end = 0
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = entry["data_offsets"]
            shape = [int(d) for d in entry["shape"]]
            str(entry["dtype"])
        except (KeyError, TypeError, ValueError):
            raise PackageError(f"{path.name} has a malformed entry for tensor {name!r}") from None
        if not 0 <= begin <= stop:
            raise PackageError(f"{path.name} has bad offsets for tensor {name!r}")
        end = max(end, int(stop))
        tensors[name] = {"dtype": entry["dtype"], "shape": shape}
    if not tensors:
        raise PackageError(f"{path.name} holds no tensors")
    if end > data_len:
        raise PackageError(
            f"{path.name} is truncated: its tensors need {end} data bytes, the file has {data_len}"
        )
    if end < data_len:
        raise PackageError(f"{path.name} has {data_len - end} stray bytes after its tensors")
    return tensors


def _check_weights(reader: _ManifestReader, root: Path, width: Any) -> dict[str, Path]:
    weights = reader.get("weights")
    files: dict[str, Path] = {}
    complete = 0
    if weights is _MISSING:
        return files
    if not isinstance(weights, dict):
        reader.problem(f"weights must be an object, got {_show(weights)}")
        return files
    for family, entries in weights.items():
        if family not in WEIGHT_ROLES:
            reader.problem(
                f"weights.{family} is not a known runtime family ({', '.join(WEIGHT_ROLES)})"
            )
            continue
        if not isinstance(entries, dict):
            reader.problem(f"weights.{family} must be an object, got {_show(entries)}")
            continue
        for role in entries:
            key = f"{family}.{role}"
            if role not in WEIGHT_ROLES[family]:
                roles = ", ".join(WEIGHT_ROLES[family])
                reader.problem(f"weights.{key} is not a known {family} file ({roles})")
                continue
            path = reader.relpath(root, f"weights.{key}")
            if path is _MISSING or not _check_file(path, f"weights.{key}", reader.problems):
                continue
            if family == "pytorch":
                try:
                    header = read_safetensors_header(path)
                except PackageError as exc:
                    reader.problems.append(f"weights.{key}: {exc}")
                    continue
                if role == "generator" and width is not _MISSING:
                    _check_generator_width(reader, key, header, width)
            files[key] = path
        # An incomplete family is allowed (files arrive one by one during an export); it is
        # simply not a usable runtime.
        if _family_complete(family, {f"{family}.{r}": r for r in entries}):
            complete += 1
    if not complete:
        reader.problem(
            "weights must name at least one complete runtime family: pytorch (generator and "
            "audio_encoder) or onnx (audio_encoder and generator_fp32 or generator_int8)"
        )
    return files


def _check_generator_width(
    reader: _ManifestReader, key: str, header: dict[str, Any], width: float
) -> None:
    if _WIDTH_PROBE not in header:
        reader.problems.append(f"weights.{key}: not a generator (it has no '{_WIDTH_PROBE}')")
        return
    expected = max(4, round(32 * width))
    got = header[_WIDTH_PROBE]["shape"][0] if header[_WIDTH_PROBE]["shape"] else None
    if got != expected:
        reader.problems.append(
            f"weights.{key}: generator has {got} input channels in '{_WIDTH_PROBE}', "
            f"but generator.width {width:g} needs {expected}"
        )


def _check_bounds(
    reader: _ManifestReader, count: Any, video_w: Any, video_h: Any
) -> np.ndarray | None:
    raw = reader.get("frames.bounds")
    if raw is _MISSING:
        return None
    if not isinstance(raw, list):
        reader.problem(
            f"frames.bounds must be a list of [xmin, ymin, xmax, ymax], got {_show(raw)}"
        )
        return None
    bad = [
        i
        for i, row in enumerate(raw)
        if not (isinstance(row, list) and len(row) == 4 and all(_is_int(v) for v in row))
    ]
    if bad:
        reader.problem(
            f"frames.bounds[{bad[0]}] must be 4 integers [xmin, ymin, xmax, ymax], "
            f"got {_show(raw[bad[0]])}"
            + (f" ({len(bad) - 1} more like it)" if len(bad) > 1 else "")
        )
        return None
    bounds = np.asarray(raw, dtype=np.int64).reshape(-1, 4)
    if count is not _MISSING and len(bounds) != count:
        reader.problem(f"frames.bounds has {len(bounds)} boxes but frames.count is {count}")
    for i, (x0, y0, x1, y1) in enumerate(bounds.tolist()):
        outside = x0 < 0 or y0 < 0 or x1 <= x0 or y1 <= y0
        if not outside and video_w is not _MISSING and video_h is not _MISSING:
            outside = x1 > video_w or y1 > video_h
        if outside:
            reader.problem(
                f"frames.bounds[{i}] {[x0, y0, x1, y1]} is not a box inside the "
                f"{video_w}x{video_h} video"
            )
            break
    return bounds.astype(np.int32)


def _check_crops(reader: _ManifestReader, crops_dir: Any, count: Any, frame_format: Any) -> None:
    if crops_dir is _MISSING or frame_format is _MISSING:
        return
    if not crops_dir.is_dir():
        reader.problems.append(f"frames.dir: folder {crops_dir.name}/ is missing")
        return
    suffix = FRAME_FORMATS[frame_format]
    present = {p.name for p in crops_dir.iterdir() if p.suffix == suffix}
    if count is _MISSING:
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


def _check_video(reader: _ManifestReader, path: Any, width: Any, height: Any, count: Any) -> None:
    if path is _MISSING or not _check_file(path, "video.file", reader.problems):
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
    if width is not _MISSING and height is not _MISSING and (got_w, got_h) != (width, height):
        reader.problems.append(
            f"video.file: {path.name} is {got_w}x{got_h}, the manifest says {width}x{height}"
        )
    # Some containers do not record a frame count (0); mp4 does.
    if got_n and count is not _MISSING and got_n != count:
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
        raise InvalidPackage(root, [f"{MANIFEST} must hold a JSON object, got {_show(data)}"])

    r = _ManifestReader(data, problems)
    if r.const("format", FORMAT) is _MISSING:
        # Another kind of file: the remaining checks would only add noise.
        raise InvalidPackage(root, problems)
    version = r.get("format_version")
    if version is not _MISSING and (not _is_int(version) or version != FORMAT_VERSION):
        r.problem(
            f"format_version must be {FORMAT_VERSION} (the version this lipstream reads), "
            f"got {_show(version)}"
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
    if look_ms is not _MISSING and look_frames is not _MISSING:
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
    if _MISSING not in mask_fields:
        try:
            mask = MaskRect(*mask_fields)
        except InvalidInput as exc:
            r.problem(f"crop.mask: {exc}")

    count = r.integer("frames.count")
    crops_dir = r.relpath(root, "frames.dir")
    frame_format = r.get("frames.format")
    if frame_format is not _MISSING and frame_format not in FRAME_FORMATS:
        r.problem(
            f"frames.format must be one of {', '.join(FRAME_FORMATS)}, got {_show(frame_format)}"
        )
        frame_format = _MISSING

    video_path = r.relpath(root, "video.file")
    video_w = r.integer("video.width")
    video_h = r.integer("video.height")
    video_n = r.integer("video.frame_count")
    r.const("video.fps", FPS)
    if video_n is not _MISSING and count is not _MISSING and video_n != count:
        r.problem(f"video.frame_count {video_n} must equal frames.count {count}")
    bounds = _check_bounds(r, count, video_w, video_h)

    metrics = r.get("metrics", required=False)
    if metrics is _MISSING:
        metrics = {}
    elif not isinstance(metrics, dict) or not all(is_finite_number(v) for v in metrics.values()):
        r.problem(f"metrics must be an object of numbers, got {_show(metrics)}")
        metrics = {}
    source = r.get("source", required=False)
    if source is _MISSING:
        source = {}
    elif not isinstance(source, dict):
        r.problem(f"source must be an object, got {_show(source)}")
        source = {}

    speech_path = None
    if r.get("audio.speech_file", required=False) is not _MISSING:
        speech_path = r.relpath(root, "audio.speech_file")
        if speech_path is _MISSING or not _check_speech(speech_path, problems):
            speech_path = None
    weight_files = _check_weights(r, root, width)
    _check_crops(r, crops_dir, count, frame_format)
    _check_video(r, video_path, video_w, video_h, video_n)

    if problems:
        raise InvalidPackage(root, problems)
    assert bounds is not None and mask is not None  # guaranteed when no problem was recorded
    return ModelPackage(
        path=root,
        name=name,
        version=pkg_version,
        fps=fps if fps is not _MISSING else FPS,
        generator_width=width,
        lookahead_ms=look_ms,
        lookahead_frames=look_frames,
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


class PackageScan(NamedTuple):
    """What ``list_packages`` found: the valid packages and, per folder name, why others fail."""

    packages: tuple[ModelPackage, ...]
    errors: Mapping[str, str]


def name_mismatch(folder: Path, manifest_name: str) -> str:
    """Why a package served from ``folder`` is refused: one package has one name everywhere."""
    return (
        f"model package {folder} is named {manifest_name!r} in its {MANIFEST} but lies in folder "
        f"{folder.name!r}; a package is served under one name, so rename the folder to "
        f"{manifest_name!r} or set the manifest's name to {folder.name!r}"
    )


def list_packages(models_dir: str | Path) -> PackageScan:
    """Every package folder under ``models_dir``, sorted by name; hidden folders are skipped."""
    root = Path(models_dir)
    packages: list[ModelPackage] = []
    errors: dict[str, str] = {}
    if not root.is_dir():
        return PackageScan((), MappingProxyType(errors))
    seen: dict[str, str] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            pkg = load_package(folder)
        except PackageError as exc:
            errors[folder.name] = str(exc)
            continue
        if pkg.name != folder.name:
            errors[folder.name] = name_mismatch(folder, pkg.name)
            continue
        if pkg.name in seen:
            errors[folder.name] = (
                f"model package {folder} is named {pkg.name!r}, like folder {seen[pkg.name]}/"
            )
            continue
        seen[pkg.name] = folder.name
        packages.append(pkg)
    return PackageScan(tuple(packages), MappingProxyType(errors))
