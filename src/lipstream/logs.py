"""Logging for the services: to the console, and to the guide's log file when LOG_DIR is set."""

from __future__ import annotations

import logging
import sys

from lipstream.settings import Settings

# Each service: the package its modules log under, and the guide's log file for it.
LOG_FILES = {
    "grpc": ("lipstream.service", "grpc_server.log"),
    "frames": ("lipstream.frames", "frame_generator.log"),
    "web": ("lipstream.web", "web_server.log"),
}


def configure_logging(settings: Settings, service: str) -> logging.Logger:
    """Send lipstream's logs to stderr and, with LOG_DIR set, a service's own to its log file.

    A service's modules log under its package (``lipstream.service``, ``lipstream.frames``,
    ``lipstream.web``): the returned logger.
    """
    root = logging.getLogger("lipstream")
    root.setLevel(settings.log_level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not any(getattr(h, "_lipstream_console", False) for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console._lipstream_console = True  # type: ignore[attr-defined]
        root.addHandler(console)
    package, filename = LOG_FILES[service]
    logger = logging.getLogger(package)
    if settings.log_dir is not None:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.log_dir / filename).resolve()
        if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
            file_handler = logging.FileHandler(path, encoding="utf-8")
            file_handler.setFormatter(fmt)
            logger.addHandler(file_handler)
    return logger


def announce(message: str) -> None:
    """A start-up line the guide shows: printed to stdout, flushed, and logged."""
    print(message, flush=True)
    logging.getLogger("lipstream").debug(message)
