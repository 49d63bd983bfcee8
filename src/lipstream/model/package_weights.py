"""The weights a model package holds: runtime families, their files, and the checks on them.

A package holds the weights of one or more runtime families (PyTorch, ONNX), one file per role,
named in its manifest under ``weights.<family>.<role>``; code names a file by its key
``"family.role"`` (``"onnx.generator_int8"``). A family is usable when it is complete: it holds a
generator and an audio encoder. ``check_weights`` is the part of ``load_package`` that checks
them; safetensors files are checked by their header alone, so a check costs the same for any
file size.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lipstream.errors import InvalidInput, PackageError
from lipstream.manifest import MISSING, ManifestReader, check_file, show

# Weight families and the files each may hold; keys are written "family.role".
WEIGHT_ROLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "pytorch": ("generator", "audio_encoder"),
        "onnx": ("generator_fp32", "generator_int8", "audio_encoder"),
    }
)
WEIGHT_SUFFIX: Mapping[str, str] = MappingProxyType({"pytorch": ".safetensors", "onnx": ".onnx"})

# The generator key whose first dimension is 32 channels scaled by the width
# (GeneratorConfig.channels: max(4, round(32 * width))); used to check generator.width.
WIDTH_PROBE = "inc.inconv.0.conv.6.weight"


def weight_filename(key: str) -> str:
    """The file name a package gives the weights stored under ``key`` (``family.role``)."""
    family, role = split_weight_key(key)
    return f"{role}{WEIGHT_SUFFIX[family]}"


def split_weight_key(key: str) -> tuple[str, str]:
    """``(family, role)`` of a key such as ``"onnx.generator_int8"``; InvalidInput if unknown."""
    family, _, role = key.partition(".")
    if family not in WEIGHT_ROLES or role not in WEIGHT_ROLES[family]:
        known = ", ".join(f"{f}.{r}" for f, roles in WEIGHT_ROLES.items() for r in roles)
        raise InvalidInput(f"unknown weights key {key!r}; known keys: {known}")
    return family, role


def family_complete(family: str, keys: Mapping[str, object]) -> bool:
    """Whether the weights keys ``keys`` hold all ``family`` needs to run."""
    has = {key.partition(".")[2] for key in keys if key.startswith(family + ".")}
    if family == "onnx":
        return "audio_encoder" in has and bool(has & {"generator_fp32", "generator_int8"})
    return set(WEIGHT_ROLES[family]) <= has


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


def check_weights(reader: ManifestReader, root: Path, width: Any) -> dict[str, Path]:
    """The weights files the manifest names, by key, each checked; problems go to ``reader``.

    ``width`` is the manifest's ``generator.width`` (or ``MISSING``), checked against the
    PyTorch generator's first layer.
    """
    weights = reader.get("weights")
    files: dict[str, Path] = {}
    complete = 0
    if weights is MISSING:
        return files
    if not isinstance(weights, dict):
        reader.problem(f"weights must be an object, got {show(weights)}")
        return files
    for family, entries in weights.items():
        if family not in WEIGHT_ROLES:
            reader.problem(
                f"weights.{family} is not a known runtime family ({', '.join(WEIGHT_ROLES)})"
            )
            continue
        if not isinstance(entries, dict):
            reader.problem(f"weights.{family} must be an object, got {show(entries)}")
            continue
        for role in entries:
            key = f"{family}.{role}"
            if role not in WEIGHT_ROLES[family]:
                roles = ", ".join(WEIGHT_ROLES[family])
                reader.problem(f"weights.{key} is not a known {family} file ({roles})")
                continue
            path = reader.relpath(root, f"weights.{key}")
            if path is MISSING or not check_file(path, f"weights.{key}", reader.problems):
                continue
            if family == "pytorch":
                try:
                    header = read_safetensors_header(path)
                except PackageError as exc:
                    reader.problems.append(f"weights.{key}: {exc}")
                    continue
                if role == "generator" and width is not MISSING:
                    _check_generator_width(reader, key, header, width)
            files[key] = path
        # An incomplete family is allowed (files arrive one by one during an export); it is
        # simply not a usable runtime.
        if family_complete(family, {f"{family}.{r}": r for r in entries}):
            complete += 1
    if not complete:
        reader.problem(
            "weights must name at least one complete runtime family: pytorch (generator and "
            "audio_encoder) or onnx (audio_encoder and generator_fp32 or generator_int8)"
        )
    return files


def _check_generator_width(
    reader: ManifestReader, key: str, header: dict[str, Any], width: float
) -> None:
    if WIDTH_PROBE not in header:
        reader.problems.append(f"weights.{key}: not a generator (it has no '{WIDTH_PROBE}')")
        return
    expected = max(4, round(32 * width))
    got = header[WIDTH_PROBE]["shape"][0] if header[WIDTH_PROBE]["shape"] else None
    if got != expected:
        reader.problems.append(
            f"weights.{key}: generator has {got} input channels in '{WIDTH_PROBE}', "
            f"but generator.width {width:g} needs {expected}"
        )
