"""The ``lipstream build`` subcommand: a training dataset from a talking-head video."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lipstream.errors import InvalidInput

# Large imports (dlib and its 100 MB landmark model) wait until the command runs, so the CLI
# starts quickly and works for everything else where the avatar extras are not installed.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``build`` subcommand."""
    p = subparsers.add_parser(
        "build",
        help="make an avatar's training dataset from a talking-head video",
        description=(
            "Find the face on every frame of VIDEO (resampled to 25 fps), cut steady 328x328 "
            "face crops, and write them with the full video, the 16 kHz speech and the "
            "landmarks to DATASETS_DIR/NAME (see docs/avatar-builder.md)."
        ),
    )
    p.add_argument("video", type=Path, help="the video: one person talking, face in view")
    p.add_argument("--name", required=True, help="dataset name (its folder under --datasets-dir)")
    p.add_argument("--datasets-dir", type=Path, default=Path("datasets"), help="default: datasets")
    p.add_argument("--force", action="store_true", help="replace a dataset of the same name")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="use only the first SECONDS of the video (default: all of it)",
    )
    p.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        from lipstream.avatar.dataset import build_dataset, load_dataset
    except ImportError as exc:
        raise InvalidInput(
            f"building a dataset needs the face landmark detector ({exc}): install the "
            "'dlib-bin' and 'face-recognition-models' packages"
        ) from None
    path = build_dataset(
        args.video,
        args.name,
        args.datasets_dir,
        progress=sys.stderr.isatty(),
        force=args.force,
        max_seconds=args.max_seconds,
    )
    dataset = load_dataset(path)
    print(summary(dataset))
    return 0


def summary(dataset: object) -> str:
    """A few lines describing a built dataset, for people."""
    from lipstream.avatar.dataset import AvatarDataset

    assert isinstance(dataset, AvatarDataset)
    count = dataset.frame_count
    lines = [
        f"dataset {dataset.name}: {count} frames ({count / dataset.fps:.2f} s) at "
        f"{dataset.fps} fps, video {dataset.video_width}x{dataset.video_height}",
        f"  folder:       {dataset.path}",
    ]
    dropped = dataset.dropped if isinstance(dataset.dropped, dict) else {}
    leading, trailing = dropped.get("leading", 0), dropped.get("trailing", 0)
    if leading or trailing:
        lines.append(
            f"  dropped:      {leading} frame(s) at the start, {trailing} at the end (no face)"
        )
    if dataset.interpolated_frames:
        shown = ", ".join(map(str, dataset.interpolated_frames[:20]))
        more = " ..." if len(dataset.interpolated_frames) > 20 else ""
        lines.append(
            f"  interpolated: {len(dataset.interpolated_frames)} frame(s) without a face "
            f"({shown}{more})"
        )
    for note in dataset.manifest.get("notes", []):
        lines.append(f"  note:         {note}")
    opening = dataset.mouth_opening
    lines.append(
        f"  mouth:        opening {float(opening.min()):.2f}..{float(opening.max()):.2f} "
        "(inner-lip gap / eye distance)"
    )
    return "\n".join(lines)
