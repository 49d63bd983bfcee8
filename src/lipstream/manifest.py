"""Checking the folders lipstream writes: their manifest's fields, their files, their WAV audio.

A model package (``lipstream.model.package``) and a training dataset
(``lipstream.avatar.dataset``) are each a folder described by a JSON manifest. Both are checked
the same way: every problem is recorded as one line in a list, so that a broken folder is
reported whole rather than one problem per attempt. ``ManifestReader`` reads typed fields and
records a problem for each missing or bad one, returning ``MISSING`` in its place;
``check_file`` and ``check_wav`` do the same for the files a manifest names.
"""

from __future__ import annotations

import math
import re
import wave
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeGuard


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""What a ``ManifestReader`` returns for a field that is absent or bad (its problem is recorded)."""


def show(value: Any) -> str:
    """``repr(value)`` cut to 60 characters, to quote a bad value in a problem."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is an integer; JSON's ``true`` and ``false`` are not."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is an integer or a finite float (not a bool, NaN or infinity)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


class ManifestReader:
    """Typed field access on a manifest that records a problem per bad or missing field.

    Fields are named by dotted paths (``"video.width"``). Each problem is appended to
    ``problems`` after ``prefix`` (such as ``"manifest.json: "``); a missing object is reported
    once, not once per field inside it. ``folder`` names the folder in problems with paths.
    """

    def __init__(
        self, data: Any, problems: list[str], prefix: str = "", folder: str = "the folder"
    ):
        self.data = data
        self.problems = problems
        self.prefix = prefix
        self.folder = folder
        self._reported: set[str] = set()

    def problem(self, text: str) -> None:
        """Record a problem with the manifest itself."""
        self.problems.append(f"{self.prefix}{text}")

    def get(self, path: str, required: bool = True) -> Any:
        """The value at ``path``, or ``MISSING`` (a problem when it is ``required``)."""
        node = self.data
        parts = path.split(".")
        for depth, part in enumerate(parts):
            here = ".".join(parts[: depth + 1])
            if not isinstance(node, dict):
                parent = ".".join(parts[:depth])
                if parent not in self._reported:
                    self._reported.add(parent)
                    self.problem(f"{parent} must be an object, got {show(node)}")
                return MISSING
            if part not in node:
                if required and here not in self._reported:
                    self._reported.add(here)
                    self.problem(f"{here} is missing")
                return MISSING
            node = node[part]
        return node

    def const(self, path: str, expected: Any) -> Any:
        """The value at ``path`` if it is ``expected`` (of the same type), else ``MISSING``."""
        value = self.get(path)
        if value is not MISSING and (value != expected or type(value) is not type(expected)):
            self.problem(f"{path} must be {expected!r}, got {show(value)}")
            return MISSING
        return value

    def string(self, path: str, pattern: re.Pattern[str] | None = None, what: str = "") -> Any:
        """A non-empty string (matching ``pattern``, described by ``what``), else ``MISSING``."""
        value = self.get(path)
        if value is MISSING:
            return value
        if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
            self.problem(f"{path} must be {what or 'a non-empty string'}, got {show(value)}")
            return MISSING
        return value

    def integer(self, path: str, minimum: int = 1) -> Any:
        """An integer of at least ``minimum``, else ``MISSING``."""
        value = self.get(path)
        if value is MISSING:
            return value
        if not is_int(value) or value < minimum:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.problem(f"{path} must be {kind}, got {show(value)}")
            return MISSING
        return value

    def number(self, path: str, low: float = 0.0, high: float | None = None) -> Any:
        """A finite number in ``(low, high]`` as a float, else ``MISSING``."""
        value = self.get(path)
        if value is MISSING:
            return value
        if not is_finite_number(value) or value <= low or (high is not None and value > high):
            kind = "a positive number" if high is None else f"a number in ({low:g}, {high:g}]"
            self.problem(f"{path} must be {kind}, got {show(value)}")
            return MISSING
        return float(value)

    def relpath(self, root: Path, path: str) -> Any:
        """A file path inside ``root``; absolute paths, '..' and backslashes are refused."""
        what = f"a relative path inside {self.folder}"
        value = self.string(path, what=what)
        if value is MISSING:
            return value
        pure = PurePosixPath(value)
        if pure.is_absolute() or ".." in pure.parts or "\\" in value:
            self.problem(f"{path} must be {what}, got {show(value)}")
            return MISSING
        return root / pure


def _about(label: str, path: Path) -> str:
    return f"{label}: {path.name}" if label else path.name


def check_file(path: Path, label: str, problems: list[str]) -> bool:
    """Whether ``path`` is a non-empty regular file, recording a problem otherwise.

    ``label`` names what refers to the file (``"video.file"``) and starts the problem; an empty
    one starts it with the file's name.
    """
    if not path.is_file():
        problems.append(f"{_about(label, path)} is missing")
        return False
    if path.stat().st_size == 0:
        problems.append(f"{_about(label, path)} is empty")
        return False
    return True


def check_wav(path: Path, label: str, problems: list[str], sample_rate: int) -> int | None:
    """The length in samples of ``path`` if it is a ``sample_rate`` Hz mono PCM16 WAV file.

    Otherwise None, with the problem recorded (``label`` as for ``check_file``).
    """
    if not check_file(path, label, problems):
        return None
    try:
        with wave.open(str(path), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            length = wav.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        problems.append(f"{_about(label, path)} is not a readable WAV file ({exc})")
        return None
    if (rate, channels, width) != (sample_rate, 1, 2):
        problems.append(
            f"{_about(label, path)} must be {sample_rate} Hz mono 16-bit PCM, got "
            f"{rate} Hz, {channels} channel(s), {8 * width}-bit"
        )
        return None
    return length
