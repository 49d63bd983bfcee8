"""The model packages the lip-sync service serves, loaded from the models folder and by name.

Every subfolder of the models folder that holds a manifest is loaded at start under its folder
name (the guide's ``fast_service/models/<name>/`` layout works by pointing ``MODELS_DIR`` at
it); a package that fails to load is logged with its problems and skipped. ``load`` loads or
reloads one package later on: the new model replaces the old one in a single step, so a request
runs either wholly on the old model or wholly on the new one. Package paths never leave the
models folder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.features import CachedEncoder, segment_features
from lipstream.errors import InvalidInput, LipstreamError, ModelNotFound, PackageError
from lipstream.model.engine import OpenedModel, open_model
from lipstream.model.package import MANIFEST, check_name, name_mismatch, scan_packages

# Opens a package folder for inference: (folder, runtime, device) -> model.
Opener = Callable[[Path, str, str], OpenedModel]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """The facts a client needs about a loaded model (the ``ModelInfo`` message)."""

    name: str
    version: str
    fps: int
    frame_count: int
    lookahead_ms: float  # audio needed past the start of a frame
    lookahead_frames: int
    video_width: int
    video_height: int
    runtime: str  # e.g. "onnx-int8"
    generator_width: float
    feature_window_frames: int = tl.WINDOW_ROWS  # feature rows per frame: 16
    feature_lookahead_frames: int = tl.SYNCTALK2D.rows_after  # of which after the frame
    feature_sample_rate: int = tl.SAMPLE_RATE  # 16000
    feature_alignment: str = tl.SYNCTALK2D.alignment  # where each row's window lies

    @classmethod
    def of(cls, name: str, model: OpenedModel) -> ModelInfo:
        """The facts of ``model``, served under ``name``."""
        pkg = model.package
        return cls(
            name=name,
            version=pkg.version,
            fps=pkg.fps,
            frame_count=pkg.frame_count,
            lookahead_ms=pkg.lookahead_ms,
            lookahead_frames=pkg.lookahead_frames,
            video_width=pkg.video_width,
            video_height=pkg.video_height,
            runtime=model.runtime,
            generator_width=pkg.generator_width,
            feature_lookahead_frames=pkg.layout.rows_after,
            feature_alignment=pkg.layout.alignment,
        )


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A model ready to serve: the opened package, its facts and how long loading took."""

    name: str
    model: OpenedModel
    info: ModelInfo
    path: Path
    load_ms: float
    # the model's audio encoder behind a cache: requests of a stream overlap by 15 windows
    encoder: CachedEncoder = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder", CachedEncoder(self.model.encoder))

    @property
    def layout(self) -> tl.FeatureLayout:
        """The feature layout of the model's package."""
        return self.model.package.layout


def _open(folder: Path, runtime: str, device: str) -> OpenedModel:
    return open_model(folder, runtime, device)


class ModelRegistry:
    """The loaded models by name; thread-safe, with atomic reloads.

    ``opener`` opens a package folder (default: ``open_model``); tests pass one that builds a
    model around a fake runtime.
    """

    def __init__(
        self,
        models_dir: str | Path,
        runtime: str = "auto",
        device: str = "auto",
        *,
        opener: Opener = _open,
        logger: logging.Logger | None = None,
    ) -> None:
        self.models_dir = Path(models_dir).resolve()
        self.runtime = runtime
        self.device = device
        self._opener = opener
        self._log = logger or _log
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()  # guards _models
        self._load_lock = threading.Lock()  # one load at a time: bounds memory during reloads

    # ---------------------------------------------------------------------------------------
    # lookups

    def names(self) -> list[str]:
        """The names of the loaded models, sorted."""
        with self._lock:
            return sorted(self._models)

    def models(self) -> list[ServedModel]:
        """The loaded models, sorted by name."""
        with self._lock:
            return [self._models[name] for name in sorted(self._models)]

    def get(self, name: str) -> ServedModel:
        """The model loaded under ``name``; ModelNotFound (naming the loaded ones) otherwise."""
        with self._lock:
            loaded = self._models.get(name)
            if loaded is not None:
                return loaded
            names = sorted(self._models)
        shown = ", ".join(names) if names else "none"
        raise ModelNotFound(f"model {name!r} is not loaded (loaded models: {shown})")

    # ---------------------------------------------------------------------------------------
    # loading

    def package_folder(self, name: str, package_path: str = "") -> Path:
        """The folder ``load(name, package_path)`` reads, checked to lie in the models folder.

        An empty ``package_path`` means ``<models>/<name>``; a relative one is taken from the
        models folder. InvalidInput for a bad name or a path that resolves (through ``..`` or
        symlinks) outside the models folder; ModelNotFound when the folder does not exist.
        """
        check_name(name)
        if package_path:
            try:
                given = Path(package_path)
                folder = given if given.is_absolute() else self.models_dir / given
                resolved = folder.resolve()
            except (ValueError, OSError) as exc:
                raise InvalidInput(
                    f"package_path {package_path!r} is not a usable path: {exc}"
                ) from None
            if resolved == self.models_dir or not resolved.is_relative_to(self.models_dir):
                raise InvalidInput(
                    f"package_path {package_path!r} is outside the models folder "
                    f"{self.models_dir}; give a package folder inside it (or leave it empty "
                    f"for {self.models_dir / name})"
                )
        else:
            folder = self.models_dir / name
        if not folder.is_dir():
            found = ", ".join(self._package_folders()) or "none"
            raise ModelNotFound(
                f"no model package {name!r}: {folder} is not a folder "
                f"(packages in {self.models_dir}: {found})"
            )
        return folder

    def load(
        self, name: str, package_path: str = "", warmup: np.ndarray | None = None
    ) -> ServedModel:
        """Load (or reload) the package for ``name``, warm it up and make it the one served.

        ``warmup`` is 16 kHz audio to run one frame on first (default: silence). Raises
        InvalidInput, ModelNotFound or PackageError; the model served before stays in place
        when loading fails.
        """
        folder = self.package_folder(name, package_path)
        with self._load_lock:
            start = time.perf_counter()
            try:
                model = self._opener(folder, self.runtime, self.device)
            except LipstreamError:
                raise
            except Exception as exc:
                # ONNX Runtime reports unreadable graphs with plain Exception subclasses
                raise PackageError(f"model package {folder} failed to load: {exc}") from exc
            if model.package.name != name:  # one package has one name in every service
                if folder.name != model.package.name:
                    raise PackageError(name_mismatch(folder, model.package.name))
                raise InvalidInput(
                    f"model package {folder} is named {model.package.name!r} in its manifest; "
                    f"load it as {model.package.name!r}, not {name!r}"
                )
            try:
                _warm_up(model, warmup)
            except Exception as exc:  # the audio is decoded already: the package is at fault
                raise PackageError(f"model package {folder} failed its warm-up run: {exc}") from exc
            load_ms = 1000.0 * (time.perf_counter() - start)
            loaded = ServedModel(name, model, ModelInfo.of(name, model), folder, load_ms)
            with self._lock:
                replaced = name in self._models
                self._models[name] = loaded
        self._log.info(
            "%s model %s from %s (%s, %d frames) in %.0f ms",
            "reloaded" if replaced else "loaded",
            name,
            folder,
            model.runtime,
            model.package.frame_count,
            load_ms,
        )
        return loaded

    def load_all(self) -> dict[str, str]:
        """Load every package folder of the models folder; returns why others failed, by folder.

        A package that fails is logged and skipped, so the service starts with the others.
        """
        errors: dict[str, str] = {}
        if not self.models_dir.is_dir():
            self._log.warning("models folder %s does not exist: no models loaded", self.models_dir)
            return errors
        for folder in self._package_folders():
            try:
                self.load(folder)
            except Exception as exc:  # one broken package must not stop the service
                errors[folder] = str(exc)
                self._log.error("skipped model package %s: %s", folder, exc)
        if not self.names():
            self._log.warning("no model package could be loaded from %s", self.models_dir)
        return errors

    def _package_folders(self) -> list[str]:
        """The names of the package folders that hold a manifest, sorted."""
        return [p.name for p in scan_packages(self.models_dir) if (p / MANIFEST).is_file()]


def _warm_up(model: OpenedModel, audio16k: np.ndarray | None) -> None:
    """Run one frame through the encoder and the generator, so the first request is not slow."""
    audio = np.zeros(tl.SAMPLES_PER_FRAME, np.float32) if audio16k is None else audio16k
    features = segment_features(audio, 0, 0, 1, model.encoder, model.package.layout)
    mouths = model.generator.generate([0], features)
    if mouths.shape != (1, 320, 320, 3):
        raise PackageError(
            f"model package {model.package.name} made a mouth of shape {list(mouths.shape)} "
            "on its warm-up run; expected [1, 320, 320, 3]"
        )
