"""WebRTC peers of the web server: a client's voice in, the composited avatar and the voice out.

``POST /api/webrtc/offer`` with ``{"sdp", "type": "offer", "model"}`` makes a ``WebRTCPeer``:

- the client's audio track (a microphone, or an agent's voice) goes to a frame generator
  session (an ``AvatarStream`` of its own);
- the avatar comes back as a video track and an audio track with the same voice, delayed by
  the pipeline latency and stamped on one clock (``AvatarOutput``);
- a data channel (any label) carries JSON messages: ``interrupt``, ``end_of_speech``,
  ``set_model`` (``model_name``) and ``get_stats``; the session's replies (``interrupted``,
  ``speech_ended``, ``model_changed``, ``stats``, ``error``) come back on it.

ICE servers come from ``WEBRTC_ICE_SERVERS``. There are none by default: the answer holds the
host's own addresses, and nothing waits on a STUN server that a server without internet
cannot reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from lipstream.errors import InvalidInput, LipstreamError, ServiceUnavailable
from lipstream.frames.client import STREAM_RATE, AvatarStream
from lipstream.recording import Recording
from lipstream.webrtc.tracks import AvatarOutput

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
"""A call whose client never connects (ICE found no path) is closed after this long."""
INTERRUPT_DROP_S = 0.2
"""After an interruption, the client's audio is dropped this long: what it said before the
interruption and what is still on its way (jitter buffers) is not turned into speech."""
FORWARDED = ("interrupted", "speech_ended", "model_changed", "stats", "error")
ACCEPTED = ("interrupt", "end_of_speech", "set_model", "get_stats")


def parse_ice_servers(text: str) -> list[RTCIceServer]:
    """``WEBRTC_ICE_SERVERS``: a JSON list of ``{"urls", "username", "credential"}`` objects,
    or URLs separated by commas (``stun:host:3478,turn:host:3478``); empty means none."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith("["):
        return [RTCIceServer(urls=url.strip()) for url in text.split(",") if url.strip()]
    try:
        entries = json.loads(text)
        return [
            RTCIceServer(
                urls=entry["urls"],
                username=entry.get("username"),
                credential=entry.get("credential"),
            )
            for entry in entries
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidInput(
            'WEBRTC_ICE_SERVERS must be a JSON list of {"urls", "username", "credential"} '
            f"objects or comma-separated stun:/turn: URLs, got {text!r}"
        ) from None


def check_offer(sdp: str) -> RTCSessionDescription:
    """The offer, once its SDP reads and it has audio (the voice) and video (the avatar)."""
    try:
        media = SessionDescription.parse(sdp).media
    except Exception as exc:  # aiortc's parser asserts and indexes its way through
        raise InvalidInput(f"the offer's SDP could not be read ({exc!r})") from None
    kinds = sorted({m.kind for m in media})  # a data channel adds "application"
    if not {"audio", "video"} <= set(kinds):
        raise InvalidInput(
            "the offer must have audio (the voice) and video (the avatar), got "
            f"{', '.join(kinds) or 'no media'}"
        )
    return RTCSessionDescription(sdp=sdp, type="offer")


class WebRTCPeer:
    """One client's call: its voice to a session, the avatar and the voice back."""

    def __init__(
        self,
        stream: AvatarStream,
        ice_servers: list[RTCIceServer],
        record_dir: Path | None = None,
    ) -> None:
        """``record_dir``: write the call, as sent, to ``record_dir/<id>.mp4``."""
        self.id = uuid.uuid4().hex
        self.stream = stream
        self.recording_path = None if record_dir is None else record_dir / f"{self.id}.mp4"
        recording = None
        if self.recording_path is not None:
            try:
                recording = Recording(self.recording_path, sample_rate=STREAM_RATE)
            except OSError as exc:
                raise ServiceUnavailable(f"the call cannot be recorded: {exc}") from exc
        self.output = AvatarOutput(stream, recording)
        self.output.on_end = lambda: self._spawn(self.close())
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self.closed = asyncio.Event()
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._drop_until = 0.0
        stream.on_message = self._forward

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Start the session and answer ``offer`` (see ``check_offer``). A call that is not
        connected within ``CONNECT_TIMEOUT_S`` is closed."""
        await self.stream.start()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._listen(track))

        @self.pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            self._channel = channel
            channel.on("message", lambda message: self._spawn(self._on_message(message)))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

        try:
            await self.pc.setRemoteDescription(offer)
            self.pc.addTrack(self.output.audio)  # on the offer's own audio and video
            self.pc.addTrack(self.output.video)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (ValueError, InvalidStateError, InvalidAccessError, OperationError) as exc:
            raise InvalidInput(f"the offer cannot be answered: {exc}") from exc
        self._spawn(self._close_unless_connected())
        return self.pc.localDescription

    async def _close_unless_connected(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if self.pc.connectionState != "connected":
            log.info("peer %s: not connected within %s s, closed", self.id, CONNECT_TIMEOUT_S)
            await self.close()

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for step in (self.output.stop, self.pc.close, self.stream.close):
            try:  # each part is closed, whatever the one before did
                await step()
            except Exception:
                log.exception("peer %s: closing failed in %s", self.id, step.__qualname__)

    async def _listen(self, track: MediaStreamTrack) -> None:
        """The client's voice, as it comes, into the session."""
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame) or time.monotonic() < self._drop_until:
                    continue
                channels = len(frame.layout.channels)  # packed s16 from aiortc's decoders
                await self.stream.push_audio(frame.to_ndarray(), frame.sample_rate, channels)
        except MediaStreamError:
            pass
        except LipstreamError as exc:
            log.info("peer %s: %s", self.id, exc)
        await self.close()

    async def _on_message(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            kind = request.get("type") if isinstance(request, dict) else None
            if kind == "interrupt":
                self._drop_until = time.monotonic() + INTERRUPT_DROP_S
                self.output.clear()  # then no tick can find a stale frame: the stream's
                await self.stream.interrupt()  # epoch moves on before it awaits anything
            elif kind == "end_of_speech":
                await self.stream.end_of_speech()
            elif kind == "set_model":
                name = request.get("model_name")
                if not isinstance(name, str):
                    raise InvalidInput('set_model needs "model_name", a model name')
                await self.stream.set_model(name)
            elif kind == "get_stats":
                await self.stream.send({"type": "get_stats"})
            else:
                raise InvalidInput(f"unknown message type {kind!r}; known: {', '.join(ACCEPTED)}")
        except (ValueError, LipstreamError) as exc:
            code = "bad_request" if isinstance(exc, ValueError) else "failed"
            self._reply({"type": "error", "code": code, "message": str(exc)})

    async def _forward(self, message: dict[str, Any]) -> None:
        if message.get("type") == "stats":
            message = {**message, "webrtc": self.stats()}
        if message.get("type") in FORWARDED:
            self._reply(message)

    def stats(self) -> dict[str, Any]:
        return {
            "peer_id": self.id,
            "frames_sent": self.output.ticks,
            "speaking_frames": self.output.speaking_frames,
            "late_ticks": self.output.late_ticks,
            "dropped_video_frames": self.output.video.dropped,
        }

    def _reply(self, message: dict[str, Any]) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps(message))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class WebRTCPeers:
    """The web server's peers: made per offer, closed with the server."""

    def __init__(self, ice_servers: list[RTCIceServer]) -> None:
        self.ice_servers = ice_servers
        self.peers: dict[str, WebRTCPeer] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def offer(
        self, stream: AvatarStream, offer: RTCSessionDescription, record_dir: Path | None = None
    ) -> tuple[WebRTCPeer, RTCSessionDescription]:
        peer = WebRTCPeer(stream, self.ice_servers, record_dir)
        try:
            answer = await peer.answer(offer)
        except BaseException:
            await peer.close()
            raise
        self.peers[peer.id] = peer
        watcher = asyncio.ensure_future(self._forget(peer))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return peer, answer

    async def _forget(self, peer: WebRTCPeer) -> None:
        await peer.closed.wait()
        self.peers.pop(peer.id, None)

    async def close(self) -> None:
        for peer in list(self.peers.values()):
            with contextlib.suppress(Exception):
                await peer.close()
