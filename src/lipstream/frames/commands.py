"""``lipstream frames``: run the frame generator (WebSocket, WEBSOCKET_PORT)."""

from __future__ import annotations

import argparse

from lipstream.logs import configure_logging
from lipstream.settings import command_settings


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "frames",
        help="run the frame generator (WebSocket): audio in, lip-synced frames out",
        description="Run the frame generator: one session per WebSocket connection; it asks "
        "the lip-sync service (GRPC_SERVER_ADDRESS, default HOST:GRPC_SERVER_PORT) for frames.",
    )
    p.add_argument("--host", help="address to listen on (HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (WEBSOCKET_PORT, default 8080)")
    p.add_argument("--lipsync", help="host:port of the lip-sync service (GRPC_SERVER_ADDRESS)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = command_settings(
        host=args.host, websocket_port=args.port, grpc_server_address=args.lipsync
    )
    configure_logging(settings, "frames")
    from lipstream.frames.server import run_frame_server

    run_frame_server(settings)
    return 0
