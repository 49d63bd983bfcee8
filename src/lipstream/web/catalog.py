"""The model packages the web server offers: listed for ``/api/models``, found by name for videos.

The web server only reads manifests and videos; it loads no network. ``ModelCatalog`` rescans
the models folder when a package folder or manifest changes (``lipstream.model.package``'s
``scan_packages`` decides which folders are packages), and refuses names no package could have
before looking, so a request cannot reach outside the models folder.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from lipstream.errors import InvalidInput, ModelNotFound
from lipstream.model.package import (
    MANIFEST,
    ModelPackage,
    PackageScan,
    check_name,
    list_packages,
    scan_packages,
)

log = logging.getLogger(__name__)

VIDEO_URL = "/api/model-video/{name}"


class BadModelName(InvalidInput):
    """A model name that no package could have (a path, dots first, odd characters)."""


class UnknownModel(ModelNotFound):
    """No package of that name; ``known`` lists the names there are."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(f"no model package named {name!r} (known: {', '.join(known) or 'none'})")
        self.known = known


class ModelCatalog:
    """The packages under MODELS_DIR, rescanned when a package folder or manifest changes.

    A video request comes with every seek, so a scan is reused while the folder list and the
    manifests stay the same, for at most ``max_age_s`` (files other than the manifest, such as a
    video still being copied, are noticed by then).
    """

    def __init__(self, models_dir: Path, max_age_s: float = 5.0):
        self.models_dir = models_dir
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._scanned_at = 0.0
        self._scan = PackageScan((), {})

    def scan(self) -> PackageScan:
        """The current packages (blocking: run it in a thread)."""
        with self._lock:
            signature = self._fingerprint()
            now = time.monotonic()
            if signature != self._signature or now - self._scanned_at > self.max_age_s:
                scan = list_packages(self.models_dir)
                if signature != self._signature or scan.errors != self._scan.errors:
                    for folder, problem in scan.errors.items():
                        log.warning("model package %s/ is not usable: %s", folder, problem)
                self._scan, self._signature, self._scanned_at = scan, signature, now
            return self._scan

    async def packages(self) -> PackageScan:
        """The current packages, scanned in a worker thread."""
        return await run_in_threadpool(self.scan)

    async def find(self, name: str) -> ModelPackage:
        """The package called ``name``; InvalidInput for a malformed name, else ModelNotFound."""
        try:
            check_name(name)
        except InvalidInput as exc:
            raise BadModelName(str(exc)) from None
        scan = await self.packages()
        for pkg in scan.packages:
            if pkg.name == name:
                return pkg
        raise UnknownModel(name, [p.name for p in scan.packages])

    def _fingerprint(self) -> tuple[Any, ...]:
        """The package folders with their manifests' change times and sizes."""
        try:
            folders = scan_packages(self.models_dir)
        except OSError:
            return ()
        marks: list[Any] = []
        for folder in folders:
            try:
                st = (folder / MANIFEST).stat()
                marks.append((folder.name, st.st_mtime_ns, st.st_size))
            except OSError:
                marks.append((folder.name, None))
        return tuple(marks)


def model_summary(pkg: ModelPackage) -> dict[str, Any]:
    """What ``/api/models`` says about a package."""
    return {
        "name": pkg.name,
        "version": pkg.version,
        "fps": pkg.fps,
        "frame_count": pkg.frame_count,
        "lookahead_ms": pkg.lookahead_ms,
        "lookahead_frames": pkg.lookahead_frames,
        "feature_layout": pkg.layout.to_dict(),
        "video_url": VIDEO_URL.format(name=pkg.name),
        "video_width": pkg.video_width,
        "video_height": pkg.video_height,
    }
