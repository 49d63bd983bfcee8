"""An ASGI middleware counting each HTTP answer into the web server's metrics.

It reads the status from the response's start message, so it counts every answer alike:
routes, errors from the exception handlers, the console's files. Routes are named by their
template (``/api/model-video/{model_name}``), the console's files as ``console``, so a
crawler cannot blow up the label set.
"""

from __future__ import annotations

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipstream.metrics import WebMetrics

# route -> the per-outcome counter of that route
_OUTCOMES = {"/token": "token_calls", "/api/session": "session_tokens", "/api/tts": "tts_calls"}


class RequestMetrics:
    """Counts requests by route and status, errors by status, and the outcome of costly calls."""

    def __init__(self, app: ASGIApp, metrics: WebMetrics, routes: list[Route]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _route_name(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
        return "console"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = self._route_name(scope)
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(str(status)).inc()
            if status == 429:
                self.metrics.rate_limited.labels(route).inc()
            counter = _OUTCOMES.get(route)
            if counter is not None:
                getattr(self.metrics, counter).labels(str(status)).inc()
