"""A fake OpenAI on a test loop: the Realtime client_secrets endpoint, and real WebRTC calls.

``client_secrets`` behaves like api.openai.com's: it refuses a wrong key with 401 (quoting the
key, as OpenAI does), records what it got, and can be told to answer slowly, with an error, or
with something that is not JSON. ``/v1/realtime/calls`` takes the browser's SDP offer with the
ephemeral key and answers it from a real WebRTC peer (aiortc) playing the assistant: a speech
track that is silent until ``start_saying()``, and the data-channel events OpenAI sends
around speech.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import uvicorn
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from testkit.loop import LoopThread

OPENAI_KEY = "sk-test-0123456789abcdefSECRET"
EPHEMERAL_KEY = "ek_test_68af7c0e"
EXPIRES_AT = 1757172600  # 2025-09-06T15:30:00Z
PEER_RATE = 48000  # WebRTC's Opus clock
PEER_FRAME = 960  # 20 ms


@dataclass
class FakeOpenAI:
    """A stand-in for api.openai.com (see the module's docstring)."""

    url: str = ""
    key: str = OPENAI_KEY  # the key it accepts
    ephemeral_key: str = EPHEMERAL_KEY
    expires_at: int = EXPIRES_AT
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay_s: float = 0.0
    status: int = 200
    answer: Any = None
    calls: list[AssistantPeer] = field(default_factory=list)
    loop: LoopThread | None = None

    def reset(self) -> None:
        self.requests.clear()
        self.delay_s, self.status, self.answer = 0.0, 200, None

    async def client_secrets(self, request: Request) -> Response:
        body = await request.json()
        auth = request.headers.get("authorization", "")
        self.requests.append({"authorization": auth, "body": body})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if auth != f"Bearer {self.key}":
            given = auth.removeprefix("Bearer ")
            return JSONResponse(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {given}. You can find your "
                        "API key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        if self.status != 200 or self.answer is not None:
            if isinstance(self.answer, str):
                return Response(self.answer, status_code=self.status, media_type="text/html")
            return JSONResponse(self.answer, status_code=self.status)
        return JSONResponse(
            {
                "value": self.ephemeral_key,
                "expires_at": self.expires_at,
                "session": {
                    "type": "realtime",
                    "object": "realtime.session",
                    "model": body["session"]["model"],
                    "audio": body["session"]["audio"],
                },
            }
        )

    async def realtime_calls(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.ephemeral_key}":
            return JSONResponse({"error": {"message": "invalid ephemeral key"}}, status_code=401)
        if not request.headers.get("content-type", "").startswith("application/sdp"):
            return JSONResponse({"error": {"message": "send application/sdp"}}, status_code=400)
        peer = AssistantPeer()
        answer = await peer.answer((await request.body()).decode())
        self.calls.append(peer)
        return Response(answer, status_code=201, media_type="application/sdp")

    @property
    def call(self) -> AssistantPeer:
        """The latest call."""
        if not self.calls:
            raise AssertionError("the console has not called the fake OpenAI")
        return self.calls[-1]

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine of a peer's on the fake's loop."""
        assert self.loop is not None
        return self.loop.run(coroutine, timeout)

    async def close_calls(self) -> None:
        for peer in self.calls:
            await peer.close()
        self.calls.clear()


class AssistantPeer:
    """The assistant's side of one WebRTC call: its voice track and its event channel."""

    def __init__(self) -> None:
        # no ICE servers: aiortc would otherwise ask a public STUN server
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.voice = VoiceTrack()
        self.pc.addTrack(self.voice)
        self.channel: Any = None
        self.channel_open = asyncio.Event()
        self.received: list[dict] = []  # client events the console sent
        self._microphone = MediaBlackhole()

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel
            self.channel_open.set()

            @channel.on("message")
            def on_message(message: str) -> None:
                self.received.append(json.loads(message))

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self._microphone.addTrack(track)

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._microphone.start()
        return self.pc.localDescription.sdp

    async def send(self, event_type: str, **fields: Any) -> None:
        await asyncio.wait_for(self.channel_open.wait(), 10)
        self.channel.send(json.dumps({"type": event_type, **fields}))

    async def start_saying(self, pcm48k: np.ndarray) -> None:
        """Start speaking as OpenAI does: ``output_audio_buffer.started``, then the audio."""
        await self.send("output_audio_buffer.started", response_id="resp_2")
        self.voice.queue(pcm48k)

    async def barge_in(self) -> None:
        """The user talks over the assistant: OpenAI's VAD fires and the output is cleared."""
        self.voice.silence()
        await self.send("input_audio_buffer.speech_started", item_id="item_1")
        await self.send("output_audio_buffer.cleared", response_id="resp_2")

    async def close(self) -> None:
        await self._microphone.stop()
        await self.pc.close()


class VoiceTrack(MediaStreamTrack):
    """48 kHz mono audio paced in real time: silence, or what ``queue`` was given."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending = np.zeros(0, np.int16)
        self._start: float | None = None
        self._pts = 0

    def queue(self, pcm48k: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, pcm48k.astype(np.int16)])

    def silence(self) -> None:
        self._pending = np.zeros(0, np.int16)

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += PEER_FRAME
            await asyncio.sleep(max(0.0, self._start + self._pts / PEER_RATE - time.monotonic()))
        samples = np.zeros(PEER_FRAME, np.int16)
        take = self._pending[:PEER_FRAME]
        samples[: len(take)] = take
        self._pending = self._pending[PEER_FRAME:]
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = PEER_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, PEER_RATE)
        return frame


@contextmanager
def serve_fake_openai(loop: LoopThread, host: str = "127.0.0.1") -> Iterator[FakeOpenAI]:
    """The fake OpenAI listening on a free port of ``host``, on ``loop``'s thread."""
    fake = FakeOpenAI(loop=loop)
    app = Starlette(
        routes=[
            Route("/v1/realtime/client_secrets", fake.client_secrets, methods=["POST"]),
            Route("/v1/realtime/calls", fake.realtime_calls, methods=["POST"]),
        ],
        # the browser posts its SDP offer straight to OpenAI, from the console's origin
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type"],
            )
        ],
    )
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))

    async def start() -> tuple[asyncio.Task[None], int]:
        sock = socket.create_server((host, 0))  # opened on the loop's thread (its namespace)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + 30
        while not server.started:
            if serving.done() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start within 30 s")
            await asyncio.sleep(0.01)
        return serving, sock.getsockname()[1]

    serving, port = loop.run(start())
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:

        async def stop() -> None:
            await fake.close_calls()
            server.should_exit = True
            await serving

        loop.run(stop())
