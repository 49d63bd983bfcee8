"""Per-client rate limits of the web server's costly routes, on the ``limits`` library.

Each limited route has a rule such as ``10/minute`` (several: ``10/minute;100/hour``), counted
per client address in a moving window held in memory. A request over a rule is refused with
429, a ``Retry-After`` header (whole seconds until the window lets one more through) and the
usual JSON error.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from lipstream.errors import LipstreamError


class RateLimited(LipstreamError):
    """A client went over a route's limit; ``retry_after_s`` says when it may try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimits:
    """The rules of each limited route, and the counts of each client under them."""

    def __init__(self, rules: dict[str, str]) -> None:
        """``rules`` maps a route name to its rule text; an empty rule leaves it unlimited."""
        self._rules: dict[str, list[RateLimitItem]] = {
            route: parse_many(text) for route, text in rules.items() if text
        }
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, route: str, client: str) -> None:
        """Count one request of ``client`` on ``route``; RateLimited when over a rule."""
        for item in self._rules.get(route, []):
            if not await self._limiter.hit(item, route, client):
                stats = await self._limiter.get_window_stats(item, route, client)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise RateLimited(
                    f"too many requests to {route}: the limit is {item} per client address; "
                    f"retry in {wait} s",
                    wait,
                )
