"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SYNCTALK2D = REPO.parent / "shared" / "synctalk2d"


@pytest.fixture(scope="session")
def synctalk2d_vectors() -> Path:
    """The folder of reference vectors made with SyncTalk_2D's own code (beside the clone)."""
    if not (SHARED_SYNCTALK2D / "manifest.json").is_file():
        pytest.skip(f"SyncTalk_2D reference vectors not found at {SHARED_SYNCTALK2D}")
    return SHARED_SYNCTALK2D
