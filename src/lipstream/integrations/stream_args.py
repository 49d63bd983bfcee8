"""The command-line options of a command that opens an ``AvatarStream`` on a running system
(``lipstream record``, ``lipstream livekit-avatar``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lipstream.frames.client import AvatarStream


def add_stream_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="ws://127.0.0.1:8080/", help="lipstream's frame generator")
    p.add_argument("--model", default="demo", help="the avatar (default: demo)")
    p.add_argument("--web-url", help="lipstream's web server (default: same host, port 3000)")
    p.add_argument("--models-dir", type=Path, help="read the avatar's video here instead")
    p.add_argument("--scale", type=float, default=1.0, help="resize the frames (default 1)")


def stream_from_args(args: argparse.Namespace) -> AvatarStream:
    return AvatarStream(
        args.url, args.model, web_url=args.web_url, models_dir=args.models_dir, scale=args.scale
    )
