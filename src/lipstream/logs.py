"""Logging for the services: to the console, and to the guide's log file when LOG_DIR is set."""

from __future__ import annotations

import logging
import sys

from lipstream.settings import Settings

# The guide's log file of each service (its "Log Locations").
LOG_FILES = {
    "grpc": "grpc_server.log",
    "frames": "frame_generator.log",
    "web": "web_server.log",
}


def configure_logging(settings: Settings, service: str) -> logging.Logger:
    """Send lipstream's logs to stderr and, with LOG_DIR set, to that service's log file."""
    root = logging.getLogger("lipstream")
    root.setLevel(settings.log_level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not any(getattr(h, "_lipstream_console", False) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console._lipstream_console = True  # type: ignore[attr-defined]
        root.addHandler(console)
    if settings.log_dir is not None:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.log_dir / LOG_FILES[service]).resolve()
        if not any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
            file_handler = logging.FileHandler(path, encoding="utf-8")
            file_handler.setFormatter(fmt)
            root.addHandler(file_handler)
    return logging.getLogger(f"lipstream.{service}")


def announce(message: str) -> None:
    """A start-up line the guide shows: printed to stdout, flushed, and logged."""
    print(message, flush=True)
    logging.getLogger("lipstream").debug(message)
