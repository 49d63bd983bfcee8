"""The ``lipstream grpc`` command: run the gRPC lip-sync service."""

from __future__ import annotations

import argparse
from pathlib import Path

from lipstream.settings import RUNTIME_CHOICES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``grpc`` subcommand."""
    p = subparsers.add_parser(
        "grpc",
        help="run the gRPC lip-sync service (default port 50051)",
        description=(
            "Serve the model packages of the models folder over gRPC (LipSyncService and "
            "grpc.health.v1) until Ctrl-C or SIGTERM. Settings come from the environment and "
            ".env (MODELS_DIR, HOST, GRPC_SERVER_PORT, RUNTIME, DEVICE, BATCH_WINDOW_MS, ...); "
            "the options below override them. See docs/lipsync-service.md."
        ),
    )
    p.add_argument("--models-dir", type=Path, help="folder of model packages (MODELS_DIR)")
    p.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (GRPC_SERVER_PORT, default 50051)")
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, help="inference runtime (RUNTIME)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="device (DEVICE)")
    p.set_defaults(func=_cmd_grpc)


def _cmd_grpc(args: argparse.Namespace) -> int:
    from lipstream.service.server import run_lipsync_server
    from lipstream.settings import command_settings

    settings = command_settings(
        models_dir=args.models_dir,
        host=args.host,
        grpc_server_port=args.port,
        runtime=args.runtime,
        device=args.device,
    )
    return run_lipsync_server(settings)
