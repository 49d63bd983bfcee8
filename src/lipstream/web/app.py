"""The web server's ASGI application: the console's files, OpenAI tokens, avatar videos, speech.

Every error is answered as JSON, ``{"error": {"code": "...", "message": "..."}}``, with the HTTP
status that fits; the client never sees a stack trace. The server reads model manifests and
videos only: it runs no lip-sync model (the lip-sync service does that).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import NotModifiedResponse, StaticFiles

from lipstream.errors import InvalidInput, LipstreamError, ModelNotFound, Overloaded
from lipstream.model.package import MANIFEST, ModelPackage, PackageScan, check_name, list_packages
from lipstream.settings import Settings
from lipstream.web.openai_token import (
    CALLS_PATH,
    DEFAULT_TIMEOUT_S,
    OpenAITokenClient,
    TokenError,
)
from lipstream.web.speech import (
    Speaker,
    SpeechRequestError,
    SpeechUnavailable,
    parse_request,
)

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

DEFAULT_CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
MAX_TTS_BODY = 64 * 1024  # bytes; 1000 characters of text fit many times over
VIDEO_URL = "/api/model-video/{name}"
_EXPOSED_HEADERS = [
    "Accept-Ranges",
    "Content-Length",
    "Content-Range",
    "ETag",
    "X-Sample-Rate",
    "X-Duration-Ms",
]


def console_dir(settings: Settings) -> Path:
    """Where the console's static files are served from: CONSOLE_DIR, else the package's own."""
    return (settings.console_dir or DEFAULT_CONSOLE_DIR).resolve()


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error every endpoint answers with."""
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


# --------------------------------------------------------------------------------------------
# Model packages


class BadModelName(InvalidInput):
    """A model name that no package could have (a path, dots first, odd characters)."""


class UnknownModel(ModelNotFound):
    """No package of that name; ``known`` lists the names there are."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(f"no model package named {name!r} (known: {', '.join(known) or 'none'})")
        self.known = known


class ModelCatalog:
    """The packages under MODELS_DIR, rescanned when a package folder or manifest changes.

    A video request comes with every seek, so a scan is reused while the folder list and the
    manifests stay the same, for at most ``max_age_s`` (files other than the manifest, such as a
    video still being copied, are noticed by then).
    """

    def __init__(self, models_dir: Path, max_age_s: float = 5.0):
        self.models_dir = models_dir
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._scanned_at = 0.0
        self._scan = PackageScan((), {})

    def scan(self) -> PackageScan:
        """The current packages (blocking: run it in a thread)."""
        with self._lock:
            signature = self._fingerprint()
            now = time.monotonic()
            if signature != self._signature or now - self._scanned_at > self.max_age_s:
                scan = list_packages(self.models_dir)
                if signature != self._signature or scan.errors != self._scan.errors:
                    for folder, problem in scan.errors.items():
                        log.warning("model package %s/ is not usable: %s", folder, problem)
                self._scan, self._signature, self._scanned_at = scan, signature, now
            return self._scan

    async def packages(self) -> PackageScan:
        return await run_in_threadpool(self.scan)

    async def find(self, name: str) -> ModelPackage:
        """The package called ``name``; InvalidInput for a malformed name, else ModelNotFound."""
        try:
            check_name(name)
        except InvalidInput as exc:
            raise BadModelName(str(exc)) from None
        scan = await self.packages()
        for pkg in scan.packages:
            if pkg.name == name:
                return pkg
        raise UnknownModel(name, [p.name for p in scan.packages])

    def _fingerprint(self) -> tuple[Any, ...]:
        try:
            folders = sorted(
                p for p in self.models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
        except OSError:
            return ()
        marks: list[Any] = []
        for folder in folders:
            try:
                st = (folder / MANIFEST).stat()
                marks.append((folder.name, st.st_mtime_ns, st.st_size))
            except OSError:
                marks.append((folder.name, None))
        return tuple(marks)


def model_summary(pkg: ModelPackage) -> dict[str, Any]:
    """What ``/api/models`` says about a package."""
    return {
        "name": pkg.name,
        "version": pkg.version,
        "fps": pkg.fps,
        "frame_count": pkg.frame_count,
        "lookahead_ms": pkg.lookahead_ms,
        "lookahead_frames": pkg.lookahead_frames,
        "video_url": VIDEO_URL.format(name=pkg.name),
        "video_width": pkg.video_width,
        "video_height": pkg.video_height,
    }


# --------------------------------------------------------------------------------------------
# Static files


class ConsoleFiles(StaticFiles):
    """The console's files; a missing folder answers 404s instead of failing every request."""

    async def check_config(self) -> None:
        return None

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if self.directory is not None and not os.path.isdir(self.directory):
            return "", None
        return super().lookup_path(path)


# --------------------------------------------------------------------------------------------
# The application


def create_app(settings: Settings, *, openai_timeout_s: float = DEFAULT_TIMEOUT_S) -> Starlette:
    """The web server's application for ``settings``; serve it with uvicorn (see server.py)."""
    tokens = OpenAITokenClient(settings, timeout_s=openai_timeout_s)
    catalog = ModelCatalog(settings.models_dir)
    speaker = Speaker()
    static_dir = console_dir(settings)
    console = ConsoleFiles(directory=static_dir, check_dir=False)
    if not (static_dir / "index.html").is_file():
        log.warning("no console at %s: the browser pages will answer 404", static_dir)

    async def token(request: Request) -> Response:
        return JSONResponse(await tokens.mint(), headers={"Cache-Control": "no-store"})

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
                "models_url": "/api/models",
            }
        )

    async def tts(request: Request) -> Response:
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

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> Response:
        return RedirectResponse("/index.html", status_code=307)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
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

    app = Starlette(
        routes=[
            _route("/token", token, "POST"),
            _route("/api/models", models, "GET"),
            _route("/api/model-video/{model_name}", model_video, "GET"),
            _route("/api/config", config, "GET"),
            _route("/api/tts", tts, "POST"),
            _route("/healthz", healthz, "GET"),
            _route("/", home, "GET"),
            Mount("/", app=console, name="console"),
        ],
        middleware=middleware,
        exception_handlers={
            HTTPException: _http_error,
            LipstreamError: _lipstream_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
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
        raise _TooLarge(limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _TooLarge(limit)
    return bytes(body)


class _TooLarge(InvalidInput):
    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than {limit} bytes")


# --------------------------------------------------------------------------------------------
# Errors as JSON

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 304:
        return Response(status_code=304, headers=exc.headers)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    if exc.status_code == 404:
        message = f"nothing here: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail
    return error_response(exc.status_code, code, message, headers=exc.headers)


def _lipstream_status(exc: LipstreamError) -> tuple[int, str]:
    if isinstance(exc, TokenError):
        return exc.status, exc.code
    if isinstance(exc, _TooLarge):
        return 413, "body_too_large"
    if isinstance(exc, SpeechRequestError):
        return 400, exc.code
    if isinstance(exc, SpeechUnavailable):
        return 503, exc.code
    if isinstance(exc, ModelNotFound):
        return 404, "unknown_model"
    if isinstance(exc, BadModelName):
        return 400, "bad_model_name"
    if isinstance(exc, InvalidInput):
        return 400, "bad_request"
    if isinstance(exc, Overloaded):
        return 503, "overloaded"
    return 500, "internal_error"


async def _lipstream_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LipstreamError)
    status, code = _lipstream_status(exc)
    if status >= 500 and not isinstance(exc, TokenError | SpeechUnavailable):
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": "2"} if code in ("tts_busy", "overloaded") else None
    extra = {"known_models": exc.known} if isinstance(exc, UnknownModel) else {}
    return error_response(status, code, str(exc), headers=headers, **extra)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed to answer; see its log")
