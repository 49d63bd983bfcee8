"""The ``lipstream web`` subcommand: the console, OpenAI tokens, avatar videos and speech."""

from __future__ import annotations

import argparse
from pathlib import Path

from lipstream.errors import InvalidInput
from lipstream.settings import command_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``web`` subcommand."""
    p = subparsers.add_parser(
        "web",
        help="serve the browser console, OpenAI tokens and avatar videos (port 3000)",
        description=(
            "Serve the browser console and its API: POST /token (OpenAI Realtime keys), "
            "GET /api/models, GET /api/model-video/NAME, GET /api/config, POST /api/tts. "
            "Settings come from the environment and .env (see docs/web-server.md); the options "
            "below override them."
        ),
    )
    p.add_argument("--host", help="address to listen on (HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on, 0 for any free one (PORT; 3000)")
    p.add_argument("--models-dir", type=Path, help="model packages folder (MODELS_DIR; models)")
    p.add_argument(
        "--console-dir", type=Path, help="console's static files (CONSOLE_DIR; the bundled one)"
    )
    p.set_defaults(func=_cmd_web)


def _cmd_web(args: argparse.Namespace) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        raise InvalidInput(f"--port must be 0 (any free port) or 1-65535, got {args.port}")
    settings = command_settings(
        host=args.host, models_dir=args.models_dir, console_dir=args.console_dir
    )
    from lipstream.logs import configure_logging
    from lipstream.web.server import run_web_server

    configure_logging(settings, "web")
    # PORT must be 1-65535; --port 0 (any free port) goes to the server directly.
    run_web_server(settings, port=args.port)
    return 0
