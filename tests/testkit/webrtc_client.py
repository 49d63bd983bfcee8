"""A real aiortc client of ``POST /api/webrtc/offer``: it speaks a recording and keeps what
comes back, by RTP timestamp."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field

import av
import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48000
STEP = RATE // 50  # 20 ms


class VoiceTrack(MediaStreamTrack):
    """A microphone: ``samples`` (int16 mono, 48 kHz) at real-time pace, then silence."""

    kind = "audio"

    def __init__(self, samples: np.ndarray) -> None:
        super().__init__()
        self.samples = samples
        self.sent = 0
        self.started: float | None = None
        self.silent = False  # stop_speaking(): silence from then on

    def stop_speaking(self) -> None:
        self.silent = True

    async def recv(self) -> av.AudioFrame:
        if self.started is None:
            self.started = time.monotonic()
        due = self.started + self.sent / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = np.zeros(STEP, np.int16)
        if not self.silent:
            part = self.samples[self.sent : self.sent + STEP]
            chunk[: len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.sent
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += STEP
        return frame


@dataclass
class Received:
    video: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (pts 90 kHz, RGB)
    audio: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (pts 48 kHz, mono)
    video_at: list[float] = field(default_factory=list)  # when each arrived (monotonic)
    audio_at: list[float] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)  # each with "_at", when it arrived


class Call:
    """One call: ``await call.start(web_url, model)``, then ``call.received``."""

    def __init__(self, voice: np.ndarray) -> None:
        self.pc = RTCPeerConnection()  # no ICE servers: host candidates in the test network
        self.voice = VoiceTrack(voice)
        self.received = Received()
        self.channel = self.pc.createDataChannel("control")
        self.channel.on(
            "message",
            lambda m: self.received.messages.append({**json.loads(m), "_at": time.monotonic()}),
        )
        self._tasks: list[asyncio.Task] = []
        self.answer: dict = {}

    async def start(self, web_url: str, model: str | None = "demo", record: bool = False) -> None:
        self.pc.addTrack(self.voice)
        self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._keep(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"sdp": self.pc.localDescription.sdp, "type": "offer", "model": model}
        if record:
            offer["record"] = True
        async with httpx.AsyncClient(timeout=60) as client:
            reply = await client.post(f"{web_url}/api/webrtc/offer", json=offer)
        reply.raise_for_status()
        self.answer = reply.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer["sdp"], "answer"))

    def send(self, message: dict) -> None:
        self.channel.send(json.dumps(message))

    async def wait_for(self, condition, timeout: float, what: str) -> None:
        """Until ``condition()`` holds, or AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}")
            await asyncio.sleep(0.05)

    def last(self, kind: str) -> dict | None:
        found = [m for m in self.received.messages if m["type"] == kind]
        return found[-1] if found else None

    async def _keep(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.received.video.append((frame.pts, frame.to_ndarray(format="rgb24")))
                    self.received.video_at.append(time.monotonic())
                else:
                    samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
                    self.received.audio.append((frame.pts, samples.mean(axis=1)))
                    self.received.audio_at.append(time.monotonic())
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
