"""An asyncio event loop in a daemon thread, for servers the synchronous tests talk to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any


class LoopThread:
    """An asyncio event loop running in a daemon thread.

    ``on_start`` runs in the thread before the loop does: a test network uses it to move the
    thread (and so every socket its loop opens) into its namespace.
    """

    def __init__(self, on_start: Callable[[], None] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            try:
                if on_start:
                    on_start()
            except BaseException as error:
                failure.append(error)
                return
            finally:
                started.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the event loop thread did not start within 30 s")
        if failure:
            raise failure[0]

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
