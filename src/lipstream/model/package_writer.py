"""Writing model packages: new ones whole, existing ones changed in place.

``PackageWriter`` builds a package in a hidden folder beside its destination and moves it into
place once it is complete and loads back (``lipstream.staging``), so a half-written package
never appears under the models folder. ``add_weights``, ``update_metrics`` and
``remove_weights`` change a package in place by rewriting its manifest atomically; the old
manifest stays when the changed package would not load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lipstream.audio.files import write_wav
from lipstream.audio.pcm import AudioChunk
from lipstream.audio.resample import resample
from lipstream.audio.timeline import FPS, SYNCTALK2D, FeatureLayout
from lipstream.errors import InvalidInput, PackageError
from lipstream.geometry import CROP_SIZE, INNER_OFFSET, MASK, NETWORK_SIZE, CropBox, crop_frame
from lipstream.manifest import is_finite_number
from lipstream.model.package import (
    ARCHITECTURE,
    AUDIO_FEATURES,
    AUDIO_SAMPLE_RATE,
    CROPS_DIR,
    FORMAT,
    FORMAT_VERSION,
    JPEG_QUALITY,
    MANIFEST,
    SPEECH_FILE,
    VIDEO_FILE,
    ModelPackage,
    check_name,
    crop_filename,
    encode_crop,
    load_package,
    lookahead_frames,
)
from lipstream.model.package_weights import (
    read_safetensors_header,
    split_weight_key,
    weight_filename,
)
from lipstream.staging import move_into_place, staging_folder
from lipstream.video import Mp4Writer


def _dump_manifest(manifest: Mapping[str, Any]) -> str:
    text = json.dumps(manifest, indent=2, ensure_ascii=False)
    # One line per box instead of six: JSON strings cannot hold raw newlines, so only arrays of
    # plain numbers laid out over several lines match.
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    pattern = re.compile(rf"\[\n\s*({number}(?:,\n\s*{number})*)\n\s*\]")
    return (
        pattern.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
        + "\n"
    )


def _write_manifest_atomic(root: Path, manifest: Mapping[str, Any]) -> None:
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(_dump_manifest(manifest), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)


def _save_tensors(path: Path, tensors: Mapping[str, Any], float16: bool = False) -> None:
    """Write tensors (torch or numpy) as safetensors; numpy input needs no torch."""
    arrays = {}
    for key, value in tensors.items():
        if type(value).__module__.startswith("torch"):
            value = value.detach().cpu()
            if float16 and value.is_floating_point():
                value = value.half()
            elif str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16
                value = value.float()
            arrays[key] = value.numpy()
        else:
            value = np.asarray(value)
            if float16 and np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float16)
            arrays[key] = value
    from safetensors.numpy import save_file

    # np.asarray(order="C") keeps 0-d tensors (BatchNorm counters) 0-d; ascontiguousarray would not
    save_file({k: np.asarray(v, order="C") for k, v in arrays.items()}, str(path))


class PackageWriter:
    """Builds a package in a hidden folder beside its destination, moved into place on commit.

    Use as a context manager: an exception inside the block (or a failed ``commit``) removes
    everything written, so a half-written package never appears under the models folder::

        with PackageWriter("models", "alice") as w:
            for frame, box in frames:
                w.add_frame(frame, box)
            w.add_weights("pytorch.generator", generator_state)
            w.add_weights("pytorch.audio_encoder", encoder_state)
            package = w.commit(generator_width=0.5)
    """

    def __init__(
        self,
        models_dir: str | Path,
        name: str,
        *,
        force: bool = False,
        jpeg_quality: int = JPEG_QUALITY,
    ):
        self.name = check_name(name)
        self.models_dir = Path(models_dir)
        self.destination = self.models_dir / name
        self.force = force
        self.jpeg_quality = jpeg_quality
        self._refuse_existing()
        self.tmp = staging_folder(self.destination)
        (self.tmp / CROPS_DIR).mkdir()
        self._bounds: list[list[int]] = []
        self._video: Mp4Writer | None = None
        self._weights: dict[str, dict[str, str]] = {}
        self._speech_file: str | None = None
        self._done = False

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._done:
            self.abort()

    @property
    def frame_count(self) -> int:
        """Frames added so far."""
        return len(self._bounds)

    def _refuse_existing(self) -> None:
        if self.destination.exists() and not self.force:
            raise PackageError(
                f"model package {self.destination} already exists (use force to replace it)"
            )

    def add_frame(self, frame: np.ndarray, box: CropBox, crop: np.ndarray | None = None) -> None:
        """Append a full-body BGR frame: its crop (computed unless given) and a video frame."""
        if self._done:
            raise PackageError("this package writer is already finished")
        height, width = frame.shape[:2]
        if self._video is None:
            self._video = Mp4Writer(self.tmp / VIDEO_FILE, width, height, FPS)
        elif (width, height) != (self._video.width, self._video.height):
            raise InvalidInput(
                f"frame {self.frame_count} is {width}x{height}, earlier frames are "
                f"{self._video.width}x{self._video.height}"
            )
        if crop is None:
            crop = crop_frame(frame, box)
        elif crop.shape != (CROP_SIZE, CROP_SIZE, 3) or crop.dtype != np.uint8:
            raise InvalidInput(
                f"crop must be uint8 [{CROP_SIZE}, {CROP_SIZE}, 3], got {crop.shape}"
            )
        if not box.fits(width, height):
            raise InvalidInput(f"crop box {box.as_list()} does not fit a {width}x{height} frame")
        data = encode_crop(crop, self.jpeg_quality)
        (self.tmp / CROPS_DIR / crop_filename(self.frame_count)).write_bytes(data)
        self._video.write(frame)
        self._bounds.append(box.as_list())

    def add_weights(
        self, key: str, weights: Mapping[str, Any] | str | Path, *, float16: bool = False
    ) -> None:
        """Store weights under ``key``: a state dict (saved as safetensors) or a file to copy.

        ``float16`` stores a state dict's floating-point tensors at half precision: half the
        size, and loaders cast them back to the network's float32.
        """
        family, role = split_weight_key(key)
        target = self.tmp / weight_filename(key)
        if isinstance(weights, str | Path):
            _copy_weights_file(Path(weights), target, family)
        else:
            if family != "pytorch":
                raise InvalidInput(f"{key} takes a file, not a state dict")
            _save_tensors(target, weights, float16=float16)
        self._weights.setdefault(family, {})[role] = target.name

    def add_speech(self, audio: AudioChunk) -> None:
        """Ship the avatar's own speech (any rate; stored as 16 kHz WAV) to calibrate int8 on."""
        if audio.sample_rate != AUDIO_SAMPLE_RATE:
            audio = AudioChunk.from_float(
                resample(audio, audio.sample_rate, AUDIO_SAMPLE_RATE), AUDIO_SAMPLE_RATE
            )
        write_wav(self.tmp / SPEECH_FILE, audio)
        self._speech_file = SPEECH_FILE

    def commit(
        self,
        *,
        generator_width: float,
        version: str = "1.0.0",
        layout: FeatureLayout = SYNCTALK2D,
        metrics: Mapping[str, float] | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> ModelPackage:
        """Write the manifest, validate the whole package and move it into place."""
        if self._video is None:
            raise PackageError("a package needs at least one frame")
        try:
            self._video.close()
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "version": version,
                "fps": FPS,
                "generator": {"architecture": ARCHITECTURE, "width": generator_width},
                "audio": {
                    "features": AUDIO_FEATURES,
                    "sample_rate": AUDIO_SAMPLE_RATE,
                    "lookahead_ms": layout.lookahead_ms,
                    "lookahead_frames": lookahead_frames(layout.lookahead_ms),
                    "layout": layout.to_dict(),
                    **({"speech_file": self._speech_file} if self._speech_file else {}),
                },
                "crop": {
                    "crop_size": CROP_SIZE,
                    "inner_offset": INNER_OFFSET,
                    "network_size": NETWORK_SIZE,
                    "mask": {"x": MASK.x, "y": MASK.y, "width": MASK.width, "height": MASK.height},
                },
                "frames": {
                    "count": self.frame_count,
                    "dir": CROPS_DIR,
                    "format": "jpeg",
                    "bounds": self._bounds,
                },
                "video": {
                    "file": VIDEO_FILE,
                    "width": self._video.padded[0],
                    "height": self._video.padded[1],
                    "frame_count": self.frame_count,
                    "fps": FPS,
                },
                "weights": self._weights,
                "metrics": dict(metrics or {}),
                "source": dict(source or {}),
            }
            _write_manifest_atomic(self.tmp, manifest)
            load_package(self.tmp)  # refuse to publish anything we could not load back
            self._refuse_existing()
            move_into_place(self.tmp, self.destination)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return load_package(self.destination)

    def abort(self) -> None:
        """Discard everything written so far."""
        if self._video is not None:
            self._video.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True


def _copy_weights_file(source: Path, target: Path, family: str) -> None:
    if not source.is_file() or source.stat().st_size == 0:
        raise InvalidInput(f"weights file {source} is missing or empty")
    if family == "pytorch":
        if source.suffix != ".safetensors":
            raise InvalidInput(f"{source} must be a .safetensors file")
        read_safetensors_header(source)
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)


# --------------------------------------------------------------------------------------------
# Updating a package in place


def _edit_manifest(package_path: Path, edit: Callable[[dict[str, Any]], None]) -> ModelPackage:
    """Apply ``edit(manifest)`` atomically; the old manifest stays if the result does not load."""
    load_package(package_path)
    manifest_path = package_path / MANIFEST
    original = manifest_path.read_text(encoding="utf-8")
    manifest = json.loads(original)
    edit(manifest)
    _write_manifest_atomic(package_path, manifest)
    try:
        return load_package(package_path)
    except PackageError:
        tmp = package_path / f".{MANIFEST}.tmp"
        tmp.write_text(original, encoding="utf-8")
        os.replace(tmp, manifest_path)
        raise


def add_weights(package_path: str | Path, key: str, file: str | Path) -> ModelPackage:
    """Copy a weights file into a package under ``key`` (e.g. ``onnx.generator_int8``).

    The file is stored as ``weight_filename(key)`` and the manifest updated atomically; the
    package must be valid before and after.
    """
    root = Path(package_path).resolve()
    family, role = split_weight_key(key)
    target = root / weight_filename(key)
    load_package(root)
    _copy_weights_file(Path(file), target, family)

    def edit(manifest: dict[str, Any]) -> None:
        manifest.setdefault("weights", {}).setdefault(family, {})[role] = target.name

    return _edit_manifest(root, edit)


def update_metrics(package_path: str | Path, metrics: Mapping[str, float]) -> ModelPackage:
    """Merge numbers (such as PSNR of a runtime) into the package's ``metrics``."""
    bad = {k: v for k, v in metrics.items() if not isinstance(k, str) or not is_finite_number(v)}
    if bad:
        raise InvalidInput(f"metrics must map names to finite numbers, got {bad}")

    def edit(manifest: dict[str, Any]) -> None:
        manifest.setdefault("metrics", {}).update(metrics)

    return _edit_manifest(Path(package_path).resolve(), edit)


def remove_weights(package_path: str | Path, family: str) -> ModelPackage:
    """Drop a runtime family's weights (e.g. ``pytorch`` from a serving-only package).

    Refused when no other complete family would remain; the files go once the manifest no
    longer names them.
    """
    root = Path(package_path).resolve()
    package = load_package(root)
    if family not in package.weight_families:
        raise InvalidInput(f"model package {package.name} holds no complete {family} weights")
    if len(package.weight_families) < 2:
        raise PackageError(
            f"model package {package.name} would be left without weights: {family} is its only "
            "runtime"
        )
    files = [path for key, path in package.weight_files.items() if key.startswith(family + ".")]

    def edit(manifest: dict[str, Any]) -> None:
        manifest["weights"].pop(family, None)

    updated = _edit_manifest(root, edit)
    for path in files:
        path.unlink(missing_ok=True)
    return updated
