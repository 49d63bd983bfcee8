"""The web server's ASGI application: the console's files, OpenAI tokens, avatar videos, speech.

``create_app`` wires the routes to their parts: the console's static files
(``console_files``), the model packages (``catalog``), OpenAI Realtime keys (``openai_token``)
and speech synthesis (``speech``). Every error is answered as JSON,
``{"error": {"code": "...", "message": "..."}}``, with the HTTP status that fits (``errors``);
the client never sees a stack trace. The server reads model manifests and videos only: it runs
no lip-sync model (the lip-sync service does that).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import NotModifiedResponse

from lipstream.access.client_address import ClientAddresses
from lipstream.access.rate_limits import RateLimits
from lipstream.access.session_tokens import SessionTokens
from lipstream.metrics import WebMetrics, exposition
from lipstream.settings import Settings
from lipstream.web.catalog import ModelCatalog, model_summary
from lipstream.web.console_files import ConsoleFiles, console_dir
from lipstream.web.errors import (
    EXCEPTION_HANDLERS,
    BodyTooLarge,
    SessionTokensOff,
    error_response,
)
from lipstream.web.openai_token import CALLS_PATH, DEFAULT_TIMEOUT_S, OpenAITokenClient
from lipstream.web.request_metrics import RequestMetrics
from lipstream.web.speech import Speaker, parse_request
from lipstream.web.webrtc_offer import WebRTCOffers

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

MAX_TTS_BODY = 64 * 1024  # bytes; 1000 characters of text fit many times over
MAX_OFFER_BODY = 64 * 1024  # bytes; an SDP offer is a few kB
_EXPOSED_HEADERS = [
    "Accept-Ranges",
    "Content-Length",
    "Content-Range",
    "ETag",
    "X-Sample-Rate",
    "X-Duration-Ms",
]


def create_app(settings: Settings, *, openai_timeout_s: float = DEFAULT_TIMEOUT_S) -> Starlette:
    """The web server's application for ``settings``; serve it with uvicorn (see server.py)."""
    tokens = OpenAITokenClient(settings, timeout_s=openai_timeout_s)
    catalog = ModelCatalog(settings.models_dir)
    speaker = Speaker()
    metrics = WebMetrics()
    addresses = ClientAddresses(settings.trusted_proxies)
    limits = RateLimits(
        {
            "/token": settings.rate_limit_token,
            "/api/session": settings.rate_limit_session,
            "/api/tts": settings.rate_limit_tts,
            "/api/webrtc/offer": settings.rate_limit_session,
        }
    )
    sessions = SessionTokens.from_settings(settings)
    webrtc = WebRTCOffers(settings, catalog, sessions)

    def client_address(request: Request) -> str:
        return addresses.resolve(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
        )

    async def limit(request: Request) -> None:
        await limits.hit(request.url.path, client_address(request))

    static_dir = console_dir(settings)
    console = ConsoleFiles(directory=static_dir, check_dir=False)
    if not (static_dir / "index.html").is_file():
        log.warning("no console at %s: the browser pages will answer 404", static_dir)

    async def token(request: Request) -> Response:
        await limit(request)
        return JSONResponse(await tokens.mint(), headers={"Cache-Control": "no-store"})

    async def session(request: Request) -> Response:
        if sessions is None:
            raise SessionTokensOff(
                "session tokens are off (SESSION_SECRET is not set): connect to the frame "
                "generator without a token"
            )
        await limit(request)
        token, expires_at = sessions.issue()
        base = websocket_base(request)
        return JSONResponse(
            {
                "token": token,
                "expires_at": expires_at,
                "websocket_url": _with_query(base, token=token),
            },
            headers={"Cache-Control": "no-store"},
        )

    def websocket_base(request: Request) -> str:
        """Where browsers reach the frame generator: PUBLIC_WEBSOCKET_URL, else this host."""
        if settings.public_websocket_url:
            return settings.public_websocket_url
        scheme = "wss" if request.url.scheme == "https" else "ws"
        return f"{scheme}://{request.url.hostname}:{settings.websocket_port}/"

    async def metrics_text(request: Request) -> Response:
        body, content_type = exposition(metrics.registry)
        return Response(body, headers={"Content-Type": content_type})

    async def models(request: Request) -> Response:
        scan = await catalog.packages()
        listed = [model_summary(pkg) for pkg in scan.packages]
        listed += [{"name": folder, "error": problem} for folder, problem in scan.errors.items()]
        listed.sort(key=lambda entry: entry["name"])
        return JSONResponse(listed)

    async def model_video(request: Request) -> Response:
        pkg = await catalog.find(request.path_params["model_name"])
        try:
            st = await run_in_threadpool(os.stat, pkg.video_path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            return error_response(
                404, "video_missing", f"model package {pkg.name!r} has no readable video file"
            )
        response = FileResponse(
            pkg.video_path,
            media_type="video/mp4",
            stat_result=st,
            # Revalidate each time: a rebuilt package keeps its name but changes its video.
            headers={"Cache-Control": "no-cache"},
        )
        # Conditional GETs (If-None-Match, If-Modified-Since): the console files' own rule.
        if console.is_not_modified(response.headers, request.headers):
            return NotModifiedResponse(response.headers)
        return response

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "websocket_url": settings.public_websocket_url or None,
                "websocket_port": settings.websocket_port,
                "audio_sample_rate": settings.audio_sample_rate,
                "audio_chunk_duration_ms": settings.audio_chunk_duration_ms,
                "openai": {
                    "available": tokens.configured,
                    "token_url": "/token",
                    "realtime_calls_url": settings.openai_base_url + CALLS_PATH,
                    "model": settings.openai_realtime_model,
                    "voice": settings.openai_realtime_voice,
                },
                "tts": {"available": speaker.available, "url": "/api/tts"},
                "session": {"token_required": sessions is not None, "url": "/api/session"},
                "webrtc": {"offer_url": "/api/webrtc/offer", "ice_servers": webrtc.ice_servers},
                "models_url": "/api/models",
            }
        )

    async def tts(request: Request) -> Response:
        await limit(request)
        body = await _read_body(request, MAX_TTS_BODY)
        spoken = await speaker.speak(parse_request(body))
        return Response(
            spoken.wav,
            media_type="audio/wav",
            headers={
                "Cache-Control": "no-store",
                "X-Sample-Rate": str(spoken.sample_rate),
                "X-Duration-Ms": f"{spoken.duration_s * 1000:.0f}",
            },
        )

    async def webrtc_offer(request: Request) -> Response:
        await limit(request)
        body = await _read_body(request, MAX_OFFER_BODY)
        answer = await webrtc.answer(body, client_address(request))
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> Response:
        return RedirectResponse("/index.html", status_code=307)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await webrtc.close()
            await tokens.aclose()

    middleware = []
    if settings.cors_allow_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_allow_origins),
                allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "Range", "If-None-Match", "If-Range"],
                expose_headers=_EXPOSED_HEADERS,
                max_age=600,
            )
        )

    routes = [
        _route("/token", token, "POST"),
        _route("/api/session", session, "POST"),
        _route("/api/models", models, "GET"),
        _route("/api/model-video/{model_name}", model_video, "GET"),
        _route("/api/config", config, "GET"),
        _route("/api/tts", tts, "POST"),
        _route("/api/webrtc/offer", webrtc_offer, "POST"),
        _route("/healthz", healthz, "GET"),
        _route("/metrics", metrics_text, "GET"),
        _route("/", home, "GET"),
    ]
    middleware.insert(0, Middleware(RequestMetrics, metrics=metrics))
    app = Starlette(
        routes=[
            *routes,
            Mount("/", app=console, name="console"),
        ],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.console_dir = static_dir
    return app


def _route(path: str, endpoint: Endpoint, method: str) -> Route:
    """A route answering ``method`` (GET also HEAD), and 405 to any other method.

    A route limited with ``methods=`` would let other methods fall through to the console's
    files, which would answer 404 instead.
    """
    allowed = {method, "HEAD"} if method == "GET" else {method}
    allow = ", ".join(sorted(allowed))

    async def only(request: Request) -> Response:
        if request.method not in allowed:
            raise HTTPException(405, headers={"Allow": allow})
        return await endpoint(request)

    return Route(path, only, methods=_ANY_METHOD, name=endpoint.__name__)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


def _with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string (kept if it has one)."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))
