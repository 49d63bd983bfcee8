"""``lipstream serve``: the whole system in one process: lip-sync service, frame generator, web.

They start in that order, each told where the one before it really listens (so port 0 works for
all three), and stop in reverse order on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lipstream.lifecycle import serve_until_signalled
from lipstream.logs import announce, configure_logging
from lipstream.settings import Settings, command_settings, dial_host


@dataclass
class RunningSystem:
    """The three services of one ``lipstream serve``; ``stop()`` ends them all."""

    lipsync: Any
    frames: Any
    web: Any
    settings: Settings

    @property
    def web_url(self) -> str:
        return self.web.url

    @property
    def websocket_url(self) -> str:
        scheme = "wss" if self.settings.tls else "ws"
        return f"{scheme}://{self.frames.host}:{self.frames.port}/"

    async def stop(self) -> None:
        await self.web.stop()
        await self.frames.stop()
        await self.lipsync.stop()


async def start_system(settings: Settings) -> RunningSystem:
    """Start the three services on settings' ports (0 = any free port) and return them."""
    from lipstream.frames.server import start_frame_server
    from lipstream.service.server import start_lipsync_server
    from lipstream.web.server import start_web_server

    lipsync = await start_lipsync_server(settings)
    try:
        dial = dial_host(settings.host)
        settings = settings.model_copy(
            update={
                "grpc_server_port": lipsync.port,
                "grpc_server_address": f"{dial}:{lipsync.port}",
            }
        )
        frames = await start_frame_server(settings)
        try:
            settings = settings.model_copy(update={"websocket_port": frames.port})
            web = await start_web_server(settings)
        except BaseException:
            await frames.stop()
            raise
    except BaseException:
        await lipsync.stop()
        raise
    announce(f"lipstream is up: open {web.browser_url}/index.html")
    return RunningSystem(lipsync, frames, web, settings)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the whole system: lip-sync service, frame generator and web server",
        description="Run the lip-sync service (gRPC, GRPC_SERVER_PORT), the frame generator "
        "(WebSocket, WEBSOCKET_PORT) and the web server with the console (HTTP, PORT) in one "
        "process. Settings come from the environment and .env (docs/configuration.md).",
    )
    p.add_argument("--models-dir", type=Path, help="model packages folder (MODELS_DIR)")
    p.add_argument("--host", help="address all three listen on (HOST, default 127.0.0.1)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = command_settings(models_dir=args.models_dir, host=args.host)
    for service in ("grpc", "frames", "web"):
        configure_logging(settings, service)
    asyncio.run(serve_until_signalled(start_system(settings)))
    return 0
