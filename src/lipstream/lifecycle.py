"""Running servers until Ctrl-C or SIGTERM, then stopping them cleanly in reverse order."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable
from typing import Protocol


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def serve_until_signalled(*starts: Awaitable[Stoppable]) -> None:
    """Start servers one after the other (each awaited to its handle), run until signalled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    handles: list[Stoppable] = []
    try:
        for start in starts:
            handles.append(await start)
        await stop.wait()
    finally:
        for handle in reversed(handles):
            await handle.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
