"""The browser console's static files, served from CONSOLE_DIR or the copy inside lipstream.

Starlette's ``StaticFiles`` does the serving (ranges, ETags, conditional requests); a console
folder that is missing answers 404s rather than failing every request, so the API still works
without it.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.staticfiles import StaticFiles

from lipstream.settings import Settings

DEFAULT_CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"


def console_dir(settings: Settings) -> Path:
    """Where the console's static files are served from: CONSOLE_DIR, else the package's own."""
    return (settings.console_dir or DEFAULT_CONSOLE_DIR).resolve()


class ConsoleFiles(StaticFiles):
    """The console's files; a missing folder answers 404s instead of failing every request."""

    async def check_config(self) -> None:
        return None

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if self.directory is not None and not os.path.isdir(self.directory):
            return "", None
        return super().lookup_path(path)
