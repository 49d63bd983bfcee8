"""A voice agent's avatar from a running lipstream: speech in, whole frames paired with their
audio out.

``AvatarStream`` is one frame generator session (docs/frame-protocol.md) seen from a
server-side client such as a Pipecat pipeline. The agent's speech goes in at any sample rate;
out come ``AvatarFrame``s: the avatar's full frame with the mouth composited on the client
(``lipstream.compositor``), each paired with the 40 ms of the agent's audio it is shown with.
Whoever plays them in order, audio at real time and each image with its audio, plays sound and
mouth in sync, whatever the pipeline latency was. When nobody speaks, ``idle_frame`` gives the
avatar's own frames.

The avatar's video comes from the web server (``/api/model-video/NAME``), or from a local
models folder when one is given.

The stream keeps the server's audio buffer from overflowing: it sends the speech at most
``AHEAD_FRACTION`` of the session's ``audio_buffer_size_ms`` ahead of the frames taken, and
holds the rest until frames are taken. A TTS that speaks much faster than real time, or a
consumer that plays at real time, never gets audio refused (``audio_buffer_full``), and the
frames waiting here stay bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from lipstream.audio.timeline import FPS
from lipstream.compositor import Compositor, decode_video
from lipstream.errors import InvalidInput, LipstreamError
from lipstream.frames.protocol import parse_binary_frame
from lipstream.model.package import load_package
from lipstream.schedule import pingpong_frame_id

log = logging.getLogger(__name__)

STREAM_RATE = 24000
"""The rate the agent's audio is sent at, and comes back at, paired with the frames."""
FRAME_SAMPLES = STREAM_RATE // FPS
"""Samples of audio per frame (40 ms)."""
FRAME_S = 1 / FPS
DEFAULT_WEB_PORT = 3000
AHEAD_FRACTION = 0.6
"""Share of the server's audio buffer the stream fills at most (see above)."""
_END = object()  # an end of speech waiting among the held audio
_OWN_MESSAGES = ("audio_chunk", "configure", "set_model", "end_of_speech", "interrupt")

ErrorHandler = Callable[[str], Awaitable[None]]
MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class AvatarFrame:
    """One video frame: ``image`` RGB uint8 [H, W, 3] and the ``audio`` played with it
    (PCM16 mono at ``STREAM_RATE``, 40 ms; empty for an idle frame). An idle frame's image is
    the avatar's own, shared and read-only: copy it to draw on it."""

    image: np.ndarray
    audio: bytes
    frame_id: int
    frame_index: int | None = None
    speaking: bool = False
    epoch: int = 0
    """Interruptions before this frame was made: one made before the latest is stale."""


@dataclass(frozen=True)
class UtteranceEnd:
    """Every frame of the utterance ended with ``end_of_speech`` has been given."""

    next_frame_index: int


def web_url_for(websocket_url: str, port: int = DEFAULT_WEB_PORT) -> str:
    """The web server beside a frame generator: same host, ``port``, http(s) for ws(s)."""
    parts = urlsplit(websocket_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise InvalidInput(f"expected a ws:// or wss:// URL, got {websocket_url!r}")
    scheme = "https" if parts.scheme == "wss" else "http"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((scheme, f"{host}:{port}", "", "", ""))


class AvatarStream:
    """One session of a running frame generator, composited into whole frames."""

    def __init__(
        self,
        url: str,
        model: str = "demo",
        *,
        web_url: str | None = None,
        models_dir: str | Path | None = None,
        scale: float = 1.0,
        blend: bool = True,
        open_timeout: float = 30.0,
        on_error: ErrorHandler | None = None,
        on_message: MessageHandler | None = None,
        ssl: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """``url``: the frame generator, ``ws://HOST:WEBSOCKET_PORT/`` (with ``?token=`` when
        the server wants session tokens). ``web_url``: where the avatar's video is served
        (default: the same host on port 3000); ``models_dir``: read the video from this local
        models folder instead. ``scale`` resizes the frames; ``blend`` feathers the mouth's
        edge as the console does. ``on_error`` hears the server's ``error`` messages,
        ``on_message`` every JSON message it sends. ``ssl``: an SSLContext for wss://;
        ``headers``: extra HTTP headers of the WebSocket handshake."""
        self.url = url
        self.model = model
        self.web_url = web_url or web_url_for(url)
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.scale = scale
        self.blend = blend
        self.open_timeout = open_timeout
        self.on_error = on_error
        self.on_message = on_message
        self.ssl = ssl
        self.headers = headers
        self.compositor: Compositor | None = None
        self.pipeline_latency_ms: float | None = None
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._out: asyncio.Queue[AvatarFrame | UtteranceEnd | None] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._asking = asyncio.Lock()
        self._resampler: tuple[int, soxr.ResampleStream] | None = None
        # the timeline, in samples at STREAM_RATE: what was sent, from where on it is kept
        # (``_audio``, for the frames still to come), and up to where frames were taken
        self._sent = 0
        self._audio = bytearray()
        self._audio_start = 0
        self._taken = 0
        self._ahead = int(AHEAD_FRACTION * 3.0 * STREAM_RATE)  # until `configured` says
        self._held: deque[np.ndarray | object] = deque()  # audio and ends not yet sent
        self._wake = asyncio.Event()
        self._pending_interrupts = 0
        self._epoch = 0
        self._utterance_ends: deque[int] = deque()  # each one's last frame index
        self._idle_position = 0
        self._closed = False

    # ---------------------------------------------------------------------------------------
    # the session

    async def start(self) -> None:
        """Connect, choose the model and load the avatar's video. Raises LipstreamError."""
        try:
            self._ws = await connect(
                self.url,
                max_size=None,
                open_timeout=self.open_timeout,
                ssl=self.ssl,
                additional_headers=self.headers,
            )
        except (OSError, TimeoutError) as exc:
            raise LipstreamError(f"cannot reach the frame generator at {self.url}: {exc}") from exc
        except Exception as exc:  # websockets' handshake refusals (401, 503, ...)
            raise LipstreamError(f"the frame generator at {self.url} refused: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self._read(self._ws)),
            asyncio.create_task(self._send_held()),
        ]
        configure = {"push_frames": True, "binary_frames": True, "audio_sample_rate": STREAM_RATE}
        configured = await self._ask({"type": "configure", **configure}, "configured")
        buffer_ms = float(configured.get("audio_buffer_size_ms", 3000.0))
        self._ahead = max(2 * FRAME_SAMPLES, int(AHEAD_FRACTION * buffer_ms * STREAM_RATE / 1000))
        await self.set_model(self.model)

    async def set_model(self, name: str) -> None:
        """Speak with model ``name`` from now on (its avatar video is loaded first)."""
        async with self._asking:  # one change at a time: the last one asked wins
            changed = await self._ask({"type": "set_model", "model_name": name}, "model_changed")
            frame_count = int(changed["frame_count"])
            compositor = await asyncio.to_thread(self._load_avatar, name, frame_count)
            self.model, self.compositor = name, compositor
            self.pipeline_latency_ms = changed.get("pipeline_latency_ms")

    async def send(self, message: dict[str, Any]) -> None:
        """Send the session another JSON message of the frame protocol (``get_stats``,
        ``ping``); audio, ends, interruptions and models go through their own methods."""
        if message.get("type") in _OWN_MESSAGES:
            raise InvalidInput(f"send {message.get('type')!r} with the stream's own method")
        await self._send(message)

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._ws, self._tasks = None, []

    async def push_audio(
        self, pcm: bytes | np.ndarray, sample_rate: int, channels: int = 1
    ) -> None:
        """Queue the agent's speech: PCM16 little-endian bytes, or an int16 array, with
        ``channels`` interleaved."""
        samples: np.ndarray | None
        if isinstance(pcm, np.ndarray):  # a decoder's packed frame, without a trip via bytes
            got = f"{pcm.size} {pcm.dtype} values"
            samples = pcm.reshape(-1) if pcm.dtype == np.int16 else None
        else:
            got = f"{len(pcm)} bytes"
            samples = np.frombuffer(pcm, "<i2") if len(pcm) % 2 == 0 else None
        if channels < 1 or samples is None or len(samples) % channels:
            raise InvalidInput(
                f"audio must be whole PCM16 samples of {channels} channel(s), got {got}"
            )
        self._connection()
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if self._resampler is None or self._resampler[0] != sample_rate:
            self._flush_resampler()
            stream = soxr.ResampleStream(sample_rate, STREAM_RATE, 1, dtype="int16")
            self._resampler = (sample_rate, stream)
        self._hold(self._resampler[1].resample_chunk(samples))

    async def end_of_speech(self) -> None:
        """The utterance is over: its last frames come, then an ``UtteranceEnd``."""
        self._connection()
        self._flush_resampler()
        self._held.append(_END)
        self._wake.set()

    @property
    def epoch(self) -> int:
        """Interruptions so far (see ``AvatarFrame.epoch``)."""
        return self._epoch

    async def interrupt(self) -> None:
        """Barge-in: queued speech and every frame not yet given are dropped at once."""
        self._epoch += 1
        self._pending_interrupts += 1  # until `interrupted` says where the timeline goes on
        self._resampler = None
        self._held.clear()
        self._audio.clear()
        self._utterance_ends.clear()
        while not self._out.empty():
            item = self._out.get_nowait()
            if item is None:  # the connection ended: keep saying so
                self._out.put_nowait(None)
                break
        await self._send({"type": "interrupt"})

    async def items(self) -> AsyncIterator[AvatarFrame | UtteranceEnd]:
        """Speaking frames in timeline order, and the end of each utterance; ends when the
        connection does."""
        while (item := await self._out.get()) is not None:
            yield self._took(item)
        self._out.put_nowait(None)

    def poll(self) -> AvatarFrame | UtteranceEnd | None:
        """The next speaking frame or utterance end if one is ready, else None. Raises
        LipstreamError once the connection has ended."""
        try:
            item = self._out.get_nowait()
        except asyncio.QueueEmpty:
            return None
        return self._took(item)

    async def get(self, timeout: float) -> AvatarFrame | UtteranceEnd | None:
        """The next speaking frame or utterance end, or None when none came within
        ``timeout`` s. Raises LipstreamError once the connection has ended."""
        try:
            item = self._out.get_nowait()
        except asyncio.QueueEmpty:
            try:
                item = await asyncio.wait_for(self._out.get(), timeout)
            except TimeoutError:
                return None
        return self._took(item)

    def idle_frame(self) -> AvatarFrame:
        """The avatar's next own frame, played ping-pong on from the last speaking one."""
        if self.compositor is None:
            raise RuntimeError("start() the stream first")
        frame_id = pingpong_frame_id(self._idle_position, self.compositor.frame_count)
        self._idle_position += 1
        return AvatarFrame(self.compositor.idle(frame_id), b"", frame_id)

    # ---------------------------------------------------------------------------------------
    # inside: the avatar, sending, receiving

    def _load_avatar(self, model: str, frame_count: int) -> Compositor:
        if self.models_dir is not None:
            package = load_package(self.models_dir / model)
            return Compositor(package, scale=self.scale, blend=self.blend, order="RGB")
        url = f"{self.web_url}/api/model-video/{model}"
        try:
            answer = httpx.get(url, timeout=60, verify=self.ssl if self.ssl else True)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise LipstreamError(f"cannot fetch the avatar's video from {url}: {exc}") from exc
        with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
            file.write(answer.content)
            file.flush()
            video = decode_video(file.name, self.scale, max_frames=frame_count, order="RGB")
        if len(video.frames) != frame_count:
            raise LipstreamError(f"{url} holds {len(video.frames)} frames, the model {frame_count}")
        return Compositor(None, video=video, blend=self.blend, name=model)

    def _took(self, item: AvatarFrame | UtteranceEnd | None) -> AvatarFrame | UtteranceEnd:
        """A frame leaves the stream: room for more audio, and idle frames go on from it."""
        if item is None:
            self._out.put_nowait(None)
            raise LipstreamError("the frame generator closed the session")
        if isinstance(item, AvatarFrame) and item.frame_index is not None:
            self._taken = max(self._taken, (item.frame_index + 1) * FRAME_SAMPLES)
            self._idle_position = item.frame_index + 1  # the server's frames are ping-pong too
            self._wake.set()
        return item

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            tail = self._resampler[1].resample_chunk(np.zeros(0, np.int16), last=True)
            self._resampler = None
            self._hold(tail)

    def _hold(self, samples: np.ndarray) -> None:
        if len(samples):
            self._held.append(samples.astype("<i2"))
            self._wake.set()

    async def _send_held(self) -> None:
        """The one sender of audio and ends: as much as the server's buffer has room for."""
        try:
            await self._send_held_forever()
        except LipstreamError as exc:  # the reader sees the connection end too, and says so
            log.info("stopped sending: %s", exc)

    async def _send_held_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._held and not self._pending_interrupts:
                item = self._held[0]
                if item is _END:
                    self._held.popleft()
                    padding = -self._sent % FRAME_SAMPLES  # the server rounds up to a frame
                    self._sent += padding
                    self._audio.extend(bytes(2 * padding))
                    await self._send({"type": "end_of_speech"})
                    continue
                assert isinstance(item, np.ndarray)
                room = self._ahead - (self._sent - self._taken)
                if room <= 0:
                    break  # until frames are taken
                part = item[:room]
                if len(part) == len(item):
                    self._held.popleft()
                else:
                    self._held[0] = item[room:]
                data = part.tobytes()
                self._sent += len(part)
                self._audio.extend(data)
                await self._connection_send(data)

    async def _send(self, message: dict[str, Any]) -> None:
        await self._connection_send(json.dumps(message))

    async def _connection_send(self, data: str | bytes) -> None:
        try:
            await self._connection().send(data)
        except WebSocketException as exc:
            raise LipstreamError(f"the frame generator closed the session: {exc}") from exc

    def _connection(self) -> ClientConnection:
        if self._ws is None or self._closed:
            raise LipstreamError("the avatar stream is not connected: start() it first")
        return self._ws

    async def _ask(self, message: dict[str, Any], reply: str) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self._replies[reply] = future
        await self._send(message)
        try:
            return await asyncio.wait_for(future, self.open_timeout)
        except TimeoutError:
            raise LipstreamError(f"the frame generator did not answer {message['type']}") from None
        finally:
            if self._replies.get(reply) is future:
                del self._replies[reply]

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    header, jpeg = parse_binary_frame(message)
                    await self._on_frame(header, jpeg)
                else:
                    await self._on_message(json.loads(message))
        except Exception as exc:  # a lost connection ends the stream; say why
            log.warning("the frame generator connection ended: %s", exc)
        finally:
            self._closed = True
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(LipstreamError("the frame generator closed the session"))
            self._out.put_nowait(None)
            with contextlib.suppress(Exception):
                await ws.close()

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        future = self._replies.pop(str(kind), None)
        if kind == "error":
            text = f"{message.get('code')}: {message.get('message')}"
            asked = self._replies.pop(_REPLY_TO.get(str(message.get("request_type")), ""), None)
            if asked is not None and not asked.done():
                asked.set_exception(LipstreamError(f"the frame generator refused: {text}"))
            elif self.on_error is not None:
                await self.on_error(text)
            else:
                log.warning("frame generator error %s", text)
        elif kind == "interrupted":
            self._pending_interrupts -= 1
            if self._pending_interrupts == 0:  # the timeline goes on from here
                self._sent = self._taken = int(message["next_frame_index"]) * FRAME_SAMPLES
                self._audio_start = self._sent
                self._audio.clear()
                self._wake.set()
        elif kind == "speech_ended" and self._pending_interrupts == 0:
            if int(message["frames"]) == 0:  # its frames all came before this answer
                self._out.put_nowait(UtteranceEnd(int(message["next_frame_index"])))
            else:
                self._utterance_ends.append(int(message["next_frame_index"]) - 1)
        if future is not None and not future.done():
            future.set_result(message)
        if self.on_message is not None:
            await self.on_message(message)

    async def _on_frame(self, header: dict[str, Any], jpeg: bytes) -> None:
        if self._pending_interrupts or self.compositor is None:
            return  # made before an interruption, or before the avatar was loaded
        index = int(header["frame_index"])
        start = index * FRAME_SAMPLES - self._audio_start
        if start < 0:
            return  # before the timeline this stream keeps
        audio = bytes(self._audio[2 * start : 2 * (start + FRAME_SAMPLES)])
        audio += bytes(2 * FRAME_SAMPLES - len(audio))  # the silence after end_of_speech
        del self._audio[: 2 * (start + FRAME_SAMPLES)]
        self._audio_start = (index + 1) * FRAME_SAMPLES
        epoch, compositor = self._epoch, self.compositor
        if header.get("model_name", self.model) == compositor.name:  # else: before a set_model
            try:
                image = await asyncio.to_thread(self._compose, compositor, header, jpeg)
            except Exception as exc:  # one bad frame costs that frame, not the stream
                log.warning("frame %d could not be composited: %s", index, exc)
            else:
                if epoch == self._epoch:  # not interrupted while compositing
                    frame = AvatarFrame(image, audio, int(header["frame_id"]), index, True, epoch)
                    self._out.put_nowait(frame)
        while self._utterance_ends and index >= self._utterance_ends[0]:
            self._out.put_nowait(UtteranceEnd(self._utterance_ends.popleft() + 1))

    @staticmethod
    def _compose(compositor: Compositor, header: dict[str, Any], jpeg: bytes) -> np.ndarray:
        return compositor.compose(int(header["frame_id"]), jpeg, header.get("bounds"))


_REPLY_TO = {"configure": "configured", "set_model": "model_changed"}
