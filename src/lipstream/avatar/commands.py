"""The avatar builder's commands: ``build``, ``avatar-from-photo``, ``train`` and ``evaluate``.

``build`` makes a training dataset from a talking-head video, ``avatar-from-photo`` a whole avatar
from one portrait, and ``train`` an avatar's lip-sync model from its dataset. ``register`` adds
the first two; ``register_train`` adds ``train``, which needs PyTorch, so ``lipstream.cli`` calls it
only when ``train`` runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lipstream.errors import InvalidInput

# Large imports (dlib and its 100 MB landmark model) wait until the command runs, so the CLI
# starts quickly and works for everything else where the avatar extras are not installed.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``build`` and ``avatar-from-photo`` subcommands."""
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
    _add_from_photo(subparsers)


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


def add_layout_arguments(p: argparse.ArgumentParser) -> None:
    """``--lookahead-ms`` / ``--rows-after``: the feature layout a model is trained for."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--lookahead-ms",
        type=float,
        help="future audio a frame may wait for: 452.5 (SyncTalk_2D's layout, the default), "
        "or less for a low-latency layout whose feature windows end at each frame's end "
        "(145: two rows ahead, 105: one, 65: none); the longest layout within it is used",
    )
    group.add_argument(
        "--rows-after",
        type=int,
        metavar="N",
        help="explicit low-latency layout: N feature rows (0-15) after the current frame, "
        "15 - N before, windows ending at each frame's end",
    )


def layout_from_args(args: argparse.Namespace):  # -> FeatureLayout
    """The feature layout ``--lookahead-ms`` / ``--rows-after`` ask for (SyncTalk_2D's if none)."""
    from lipstream.audio.timeline import SYNCTALK2D, WINDOW_ROWS, FeatureLayout

    if args.rows_after is not None:
        return FeatureLayout(WINDOW_ROWS - 1 - args.rows_after, args.rows_after, "frame_end")
    if args.lookahead_ms is not None:
        return FeatureLayout.for_lookahead_ms(args.lookahead_ms)
    return SYNCTALK2D


def _add_from_photo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "avatar-from-photo",
        help="make a lip-sync avatar from one portrait (renders, trains and exports it)",
    )
    p.add_argument("photo", type=Path, help="a frontal portrait (JPEG, PNG, ...)")
    p.add_argument("--name", required=True, help="avatar name (its dataset and package folders)")
    p.add_argument("--datasets-dir", type=Path, default=Path("datasets"), help="default: datasets")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="default: models")
    p.add_argument(
        "--seconds", type=float, default=180.0, help="speech to render for training (default 180)"
    )
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--width", type=float, default=0.25, help="generator width (default 0.25)")
    p.add_argument("--batch-size", type=int, default=8, help="default: 8")
    p.add_argument("--resume", action="store_true", help="reuse datasets and checkpoints")
    p.add_argument("--force", action="store_true", help="replace an existing dataset or package")
    p.add_argument(
        "--serving-only", action="store_true", help="drop the PyTorch weights after export"
    )
    add_layout_arguments(p)
    p.set_defaults(func=_cmd_from_photo)


def _cmd_from_photo(args: argparse.Namespace) -> int:
    from lipstream.avatar.from_photo import avatar_from_photo
    from lipstream.avatar.train import TrainConfig
    from lipstream.model.commands import summary as package_summary

    config = TrainConfig(
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        layout=layout_from_args(args),
    )
    package = avatar_from_photo(
        args.photo,
        args.name,
        datasets_dir=args.datasets_dir,
        models_dir=args.models_dir,
        seconds=args.seconds,
        config=config,
        resume=args.resume,
        force=args.force,
        serving_only=args.serving_only,
        progress=sys.stderr.isatty(),
    )
    print(package_summary(package))
    return 0


def register_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` subcommand (it needs PyTorch: ``lipstream.cli`` adds it on demand)."""
    from lipstream.avatar import train

    defaults = train.TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train an avatar's lip-sync model from its dataset and write its model package",
        description=train.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="dataset name (its folder under --datasets-dir) and package name")
    p.add_argument("--datasets-dir", type=Path, default=Path("datasets"), help="default: datasets")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="default: models")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"default: {defaults.steps}")
    p.add_argument(
        "--width",
        type=float,
        default=defaults.width,
        help=f"generator width, default {defaults.width}",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"default: {defaults.batch_size}",
    )
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"default: {defaults.lr}")
    p.add_argument(
        "--lr-decay-fraction",
        type=float,
        default=defaults.lr_decay_fraction,
        metavar="F",
        help="the last F of the steps train at a tenth of --lr (0: one rate throughout); "
        f"default {defaults.lr_decay_fraction}",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        help=f"steps between checkpoints, default {defaults.checkpoint_every}",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help=f"default: {defaults.seed}")
    p.add_argument(
        "--run-dir",
        type=Path,
        help="where checkpoints go; default: <datasets-dir>/<name>/training",
    )
    p.add_argument(
        "--avatar-frames",
        metavar="DATASET",
        help="a dataset (under --datasets-dir) whose frames the package shows, e.g. a short "
        "clip at rest; default: the training dataset's own frames",
    )
    p.add_argument(
        "--package",
        metavar="NAME",
        help="name of the model package to write; default: the dataset's name",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument("--force", action="store_true", help="replace a package of the same name")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=defaults.device)
    p.add_argument("--threads", type=int, default=0, help="CPU threads; default: every core")
    add_layout_arguments(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from lipstream.avatar.train import TrainConfig, train

    config = TrainConfig(
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay_fraction=args.lr_decay_fraction,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        threads=args.threads,
        layout=layout_from_args(args),
    )
    result = train(
        args.datasets_dir / args.name,
        args.models_dir,
        args.package or args.name,
        config,
        run_dir=args.run_dir,
        resume=args.resume,
        force=args.force,
        progress=sys.stderr.isatty(),
        avatar_frames=args.datasets_dir / args.avatar_frames if args.avatar_frames else None,
    )
    print(f"{result.package.name}: {result.steps} steps, package {result.package.path}")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key}: {value:g}")
    return 0


def register_evaluate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` subcommand (it needs PyTorch: ``lipstream.cli`` adds it on demand)."""
    from lipstream.avatar import package_evaluation

    p = subparsers.add_parser(
        "evaluate",
        help="measure a model package on a dataset's held-out frames (sync, PSNR, SSIM)",
        description=package_evaluation.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("package", type=Path, help="the model package folder, e.g. models/demo")
    p.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="a dataset made by `lipstream build` (its last 10%% of frames are measured)",
    )
    p.add_argument(
        "--contact-sheet",
        type=Path,
        metavar="JPG",
        help="also write real (top) and generated (bottom) mouths of 10 held-out frames",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from lipstream.avatar.package_evaluation import evaluate_package

    metrics = evaluate_package(args.package, args.dataset, contact_sheet=args.contact_sheet)
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        for key, value in sorted(metrics.items()):
            print(f"{key}: {value:g}")
    return 0
