"""An ASGI middleware counting each HTTP answer into the web server's metrics.

It reads the status from the response's start message, so it counts every answer alike:
routes, errors from the exception handlers, the console's files. Routes are named by their
template (``/api/model-video/{model_name}``), as the router matched it, the console's files as
``console``, so a crawler cannot blow up the label set.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipstream.metrics import WebMetrics

# route -> the per-outcome counter of that route
_OUTCOMES = {"/token": "token_calls", "/api/session": "session_tokens", "/api/tts": "tts_calls"}


class RequestMetrics:
    """Counts requests by route and status, errors by status, and the outcome of costly calls."""

    def __init__(self, app: ASGIApp, metrics: WebMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            # the router names the route it matched in the scope; the console's files (a
            # mount) and paths nothing matched count as "console"
            matched = scope.get("route")
            route = matched.path if isinstance(matched, Route) else "console"
            self.metrics.requests.labels(route, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(str(status)).inc()
            if status == 429:
                self.metrics.rate_limited.labels(route).inc()
            counter = _OUTCOMES.get(route)
            if counter is not None:
                getattr(self.metrics, counter).labels(str(status)).inc()
