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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import httpx
import numpy as np
import soxr
from websockets.asyncio.client import ClientConnection, connect

from lipstream.compositor import Compositor, decode_video
from lipstream.errors import InvalidInput, LipstreamError
from lipstream.frames.protocol import parse_binary_frame
from lipstream.model.package import load_package
from lipstream.schedule import pingpong_frame_id

log = logging.getLogger(__name__)

STREAM_RATE = 24000
"""The rate the agent's audio is sent at, and comes back at, paired with the frames."""
FRAME_SAMPLES = STREAM_RATE // 25
"""Samples of audio per frame (40 ms)."""
DEFAULT_WEB_PORT = 3000

ErrorHandler = Callable[[str], Awaitable[None]]
MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class AvatarFrame:
    """One video frame: ``image`` RGB uint8 [H, W, 3] and the ``audio`` played with it
    (PCM16 mono at ``STREAM_RATE``, 40 ms; empty for an idle frame)."""

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
    ) -> None:
        """``url``: the frame generator, ``ws://HOST:WEBSOCKET_PORT/`` (with ``?token=`` when
        the server wants session tokens). ``web_url``: where the avatar's video is served
        (default: the same host on port 3000); ``models_dir``: read the video from this local
        models folder instead. ``scale`` resizes the frames; ``blend`` feathers the mouth's
        edge as the console does. ``on_error`` hears the server's ``error`` messages,
        ``on_message`` every JSON message it sends. ``ssl``: an SSLContext for wss://."""
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
        self.compositor: Compositor | None = None
        self.pipeline_latency_ms: float | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._out: asyncio.Queue[AvatarFrame | UtteranceEnd | None] = asyncio.Queue()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._resampler: tuple[int, soxr.ResampleStream] | None = None
        self._audio = bytearray()  # what was sent of the timeline from frame _base on
        self._base: int | None = 0
        self._pending_interrupts = 0
        self._epoch = 0
        self._utterance_end: int | None = None
        self._idle_position = 0

    # ---------------------------------------------------------------------------------------
    # the session

    async def start(self) -> None:
        """Connect, choose the model and load the avatar's video. Raises LipstreamError."""
        try:
            self._ws = await connect(
                self.url, max_size=None, open_timeout=self.open_timeout, ssl=self.ssl
            )
        except (OSError, TimeoutError) as exc:
            raise LipstreamError(f"cannot reach the frame generator at {self.url}: {exc}") from exc
        except Exception as exc:  # websockets' handshake refusals (401, 503, ...)
            raise LipstreamError(f"the frame generator at {self.url} refused: {exc}") from exc
        self._reader = asyncio.create_task(self._read(self._ws))
        configure = {"push_frames": True, "binary_frames": True, "audio_sample_rate": STREAM_RATE}
        await self._ask({"type": "configure", **configure}, "configured")
        await self.set_model(self.model)

    async def set_model(self, name: str) -> None:
        """Speak with model ``name`` from now on (its avatar video is loaded first)."""
        changed = await self._ask({"type": "set_model", "model_name": name}, "model_changed")
        compositor = await asyncio.to_thread(self._load_avatar, name, int(changed["frame_count"]))
        self.model, self.compositor = name, compositor
        self.pipeline_latency_ms = changed.get("pipeline_latency_ms")
        self._idle_position = 0

    async def send(self, message: dict[str, Any]) -> None:
        """Send the session a JSON message of the frame protocol (``get_stats``, ...)."""
        await self._send(message)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._ws = self._reader = None

    async def push_audio(self, pcm: bytes, sample_rate: int, channels: int = 1) -> None:
        """Queue the agent's speech: PCM16 little-endian, ``channels`` interleaved."""
        if channels < 1 or len(pcm) % (2 * channels):
            raise InvalidInput(
                f"audio must be whole PCM16 samples of {channels} channel(s), got {len(pcm)} bytes"
            )
        samples = np.frombuffer(pcm, dtype="<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if self._resampler is None or self._resampler[0] != sample_rate:
            await self._flush_resampler()
            stream = soxr.ResampleStream(sample_rate, STREAM_RATE, 1, dtype="int16")
            self._resampler = (sample_rate, stream)
        await self._send_audio(self._resampler[1].resample_chunk(samples))

    async def end_of_speech(self) -> None:
        """The utterance is over: its last frames come, then an ``UtteranceEnd``."""
        await self._flush_resampler()
        padding = -len(self._audio) // 2 % FRAME_SAMPLES  # the server rounds up to a frame
        self._audio.extend(bytes(2 * padding))
        await self._send({"type": "end_of_speech"})

    @property
    def epoch(self) -> int:
        """Interruptions so far (see ``AvatarFrame.epoch``)."""
        return self._epoch

    async def interrupt(self) -> None:
        """Barge-in: queued speech and every frame not yet given are dropped at once."""
        self._epoch += 1
        self._pending_interrupts += 1
        self._resampler = None
        self._audio.clear()
        self._base = None  # until the server says where the next audio starts
        self._utterance_end = None
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
            yield item

    def poll(self) -> AvatarFrame | UtteranceEnd | None:
        """The next speaking frame or utterance end if one is ready, else None. Raises
        LipstreamError once the connection has ended."""
        try:
            item = self._out.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if item is None:
            self._out.put_nowait(None)
            raise LipstreamError("the frame generator closed the session")
        return item

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
        if item is None:
            self._out.put_nowait(None)
            raise LipstreamError("the frame generator closed the session")
        return item

    def idle_frame(self) -> AvatarFrame:
        """The avatar's next own frame, played ping-pong."""
        if self.compositor is None:
            raise RuntimeError("start() the stream first")
        frame_id = pingpong_frame_id(self._idle_position, self.compositor.frame_count)
        self._idle_position += 1
        image = self.compositor.idle(frame_id)
        return AvatarFrame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), b"", frame_id)

    # ---------------------------------------------------------------------------------------
    # inside

    def _load_avatar(self, model: str, frame_count: int) -> Compositor:
        if self.models_dir is not None:
            package = load_package(self.models_dir / model)
            return Compositor(package, scale=self.scale, blend=self.blend)
        url = f"{self.web_url}/api/model-video/{model}"
        try:
            answer = httpx.get(url, timeout=60, verify=True)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            raise LipstreamError(f"cannot fetch the avatar's video from {url}: {exc}") from exc
        with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
            file.write(answer.content)
            file.flush()
            video = decode_video(file.name, self.scale, max_frames=frame_count)
        if len(video.frames) != frame_count:
            raise LipstreamError(f"{url} holds {len(video.frames)} frames, the model {frame_count}")
        return Compositor(None, video=video, blend=self.blend, name=model)

    async def _flush_resampler(self) -> None:
        if self._resampler is not None:
            tail = self._resampler[1].resample_chunk(np.zeros(0, np.int16), last=True)
            self._resampler = None
            await self._send_audio(tail)

    async def _send_audio(self, samples: np.ndarray) -> None:
        if len(samples):
            data = samples.astype("<i2").tobytes()
            self._audio.extend(data)
            await self._connection().send(data)

    async def _send(self, message: dict[str, Any]) -> None:
        await self._connection().send(json.dumps(message))

    def _connection(self) -> ClientConnection:
        if self._ws is None:
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
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(LipstreamError("the frame generator closed the session"))
            self._out.put_nowait(None)

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
            if self._pending_interrupts == 0:
                self._base = int(message["next_frame_index"])
        elif kind == "speech_ended" and self._pending_interrupts == 0:
            last = int(message["next_frame_index"]) - 1
            if int(message["frames"]) == 0:
                self._out.put_nowait(UtteranceEnd(last + 1))
            else:
                self._utterance_end = last
        if future is not None and not future.done():
            future.set_result(message)
        if self.on_message is not None:
            await self.on_message(message)

    async def _on_frame(self, header: dict[str, Any], jpeg: bytes) -> None:
        if self._pending_interrupts or self._base is None or self.compositor is None:
            return  # made before an interruption, or before the avatar was loaded
        if header.get("model_name", self.model) != self.compositor.name:
            return  # drawn for the avatar before a set_model
        index = int(header["frame_index"])
        epoch = self._epoch
        image = await asyncio.to_thread(self._compose, header, jpeg)
        if epoch != self._epoch:
            return  # interrupted while compositing
        offset = (index - self._base) * FRAME_SAMPLES * 2
        if offset < 0:
            return
        audio = bytes(self._audio[offset : offset + FRAME_SAMPLES * 2])
        audio += bytes(FRAME_SAMPLES * 2 - len(audio))  # the silence after end_of_speech
        del self._audio[: offset + FRAME_SAMPLES * 2]
        self._base = index + 1
        frame = AvatarFrame(image, audio, int(header["frame_id"]), index, True, epoch)
        self._out.put_nowait(frame)
        if self._utterance_end is not None and index >= self._utterance_end:
            self._utterance_end = None
            self._out.put_nowait(UtteranceEnd(index + 1))

    def _compose(self, header: dict[str, Any], jpeg: bytes) -> np.ndarray:
        assert self.compositor is not None
        bounds = header.get("bounds")
        frame = self.compositor.compose(int(header["frame_id"]), jpeg, bounds)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


_REPLY_TO = {"configure": "configured", "set_model": "model_changed"}
