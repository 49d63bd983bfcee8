"""Publishing a folder whole: it is built under a hidden name beside its destination, then moved.

Model packages and training datasets are written this way, so a half-written one never appears
under its real name, and readers that skip hidden folders (``lipstream.model.package``'s scan)
never see one. Replacing an existing folder keeps the old one until the new one is in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def staging_folder(destination: Path) -> Path:
    """A new, empty hidden folder beside ``destination`` to build it in (``.name.*.partial``)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent)
    )


def move_into_place(staged: Path, destination: Path) -> None:
    """Move the folder ``staged`` to ``destination``, replacing any folder there.

    The old folder is set aside under a hidden name until the new one is in place, and put back
    if the move fails, so a failure loses neither.
    """
    old: Path | None = None
    if destination.exists():
        old = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".old", dir=destination.parent)
        )
        os.replace(destination, old / destination.name)
    try:
        os.replace(staged, destination)
    except BaseException:
        if old is not None:
            os.replace(old / destination.name, destination)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
