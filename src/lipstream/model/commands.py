"""The ``lipstream`` subcommands for model packages: import, check, list."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lipstream.model.package import InvalidPackage, ModelPackage, list_packages, load_package

IMPORT_DESCRIPTION = (
    "Turn a trained SyncTalk_2D dataset folder (full_body_img/, landmarks/, "
    "checkpoint/<name>/<epoch>.pth, aud.wav) plus its AVE audio encoder into a lipstream model "
    "package: crops and boxes from the landmarks, the avatar's video, the weights and speech."
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the model package subcommands."""
    p = subparsers.add_parser(
        "import-synctalk2d",
        help="turn a trained SyncTalk_2D dataset into a model package",
        description=IMPORT_DESCRIPTION,
    )
    p.add_argument("dataset", type=Path, help="SyncTalk_2D dataset folder (full_body_img/, ...)")
    p.add_argument(
        "--audio-encoder", required=True, type=Path, help="AVE audio encoder checkpoint (.pth)"
    )
    p.add_argument("--name", required=True, help="package name (its folder under --models-dir)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="generator checkpoint (.pth) or its folder; default: newest under checkpoint/",
    )
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="default: models")
    p.add_argument("--force", action="store_true", help="replace a package of the same name")
    p.add_argument(
        "--float16-weights",
        action="store_true",
        help="store weights at half precision (half the size; outputs change by about 1e-3)",
    )
    p.set_defaults(func=_cmd_import)

    c = subparsers.add_parser("check-package", help="validate a model package and print a summary")
    c.add_argument("path", type=Path, help="package folder")
    c.set_defaults(func=_cmd_check)

    e = subparsers.add_parser(
        "export",
        help="add ONNX fp32 and int8 weights to a package (int8 calibrated on its own frames)",
    )
    e.add_argument("path", type=Path, help="package folder")
    e.add_argument("--no-int8", action="store_true", help="export fp32 only")
    e.add_argument(
        "--calibration-audio",
        type=Path,
        help="speech to calibrate int8 on (default: the package's speech.wav)",
    )
    e.set_defaults(func=_cmd_export)

    m = subparsers.add_parser("models", help="list the model packages under a models folder")
    m.add_argument("--models-dir", type=Path, default=Path("models"), help="default: models")
    m.set_defaults(func=_cmd_models)


def _cmd_import(args: argparse.Namespace) -> int:
    # imported here: the importer needs PyTorch, which the other commands (and serving) do not
    from lipstream.model import import_synctalk2d as synctalk2d_import

    pkg = synctalk2d_import.import_synctalk2d(
        args.dataset,
        audio_encoder=args.audio_encoder,
        name=args.name,
        models_dir=args.models_dir,
        checkpoint=args.checkpoint,
        force=args.force,
        float16=args.float16_weights,
        progress=sys.stderr.isatty(),
    )
    print(summary(pkg))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        pkg = load_package(args.path)
    except InvalidPackage as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(summary(pkg))
    return 0


def summary(pkg: ModelPackage) -> str:
    """A few lines describing a package, for people."""
    size = sum(p.stat().st_size for p in pkg.path.rglob("*") if p.is_file())
    lines = [
        f"{pkg.name} {pkg.version}  ({pkg.path}, {size / 1e6:.1f} MB)",
        f"  frames:    {pkg.frame_count} at {pkg.fps} fps, video {pkg.video_width}x"
        f"{pkg.video_height}",
        f"  generator: width {pkg.generator_width:g}",
        f"  audio:     lookahead {pkg.lookahead_ms:g} ms ({pkg.lookahead_frames} frames), "
        f"features {pkg.layout.describe()}",
        f"  runtimes:  {', '.join(pkg.weight_families)}",
        "  weights:   " + ", ".join(sorted(pkg.weight_files)),
    ]
    if pkg.metrics:
        lines.append(
            "  metrics:   " + ", ".join(f"{k}={v:g}" for k, v in sorted(pkg.metrics.items()))
        )
    return "\n".join(lines)


def _cmd_models(args: argparse.Namespace) -> int:
    scan = list_packages(args.models_dir)
    for pkg in scan.packages:
        print(summary(pkg))
    for folder, error in scan.errors.items():
        print(f"{folder}: not usable: {error}", file=sys.stderr)
    if not scan.packages:
        print(
            f"no model package in {args.models_dir}/: import a trained SyncTalk_2D avatar with "
            "`lipstream import-synctalk2d` (see docs/model-package.md)",
            file=sys.stderr,
        )
    return 0 if scan.packages else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from lipstream.model.package_export import export_package

    pkg = export_package(args.path, int8=not args.no_int8, calibration=args.calibration_audio)
    print(summary(pkg))
    return 0
