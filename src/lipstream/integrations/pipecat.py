"""lipstream as a Pipecat video service: the avatar of a Pipecat voice agent.

Place ``LipstreamVideoService`` after the TTS service, before the output transport::

    avatar = LipstreamVideoService(url="ws://127.0.0.1:8080/", model="demo")
    pipeline = Pipeline([transport.input(), stt, context_aggregator.user(), llm, tts, avatar,
                         transport.output(), context_aggregator.assistant()])

It takes the TTS audio (``TTSAudioRawFrame``, any rate) and sends it to lipstream's frame
generator. Each frame that comes back is composited into the avatar's full frame and pushed as
an ``OutputImageRawFrame`` that the output transport shows with its 40 ms of the same audio
(``sync_with_audio``), pushed right after it as a ``TTSAudioRawFrame`` at 24 kHz: the audio is
held back by the pipeline latency, so sound and mouth stay in sync. While nobody speaks it pushes
the avatar's own frames at 25 fps. An interruption (``InterruptionFrame``, or the user starting
to speak) interrupts the session at once: frames of the interrupted speech are never pushed.

Install with ``pip install 'lipstream[pipecat]'``; set the transport's ``video_out_enabled``,
``video_out_width``/``height`` (the avatar video's size times ``scale``) and
``video_out_framerate=25``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from lipstream.errors import LipstreamError
from lipstream.frames.client import (
    FRAME_S,
    STREAM_RATE,
    AvatarFrame,
    AvatarStream,
    UtteranceEnd,
)
from lipstream.recording import Recording


class LipstreamVideoService(FrameProcessor):
    """Composited avatar frames, in sync with the TTS audio, from a running lipstream."""

    def __init__(
        self,
        *,
        url: str,
        model: str = "demo",
        web_url: str | None = None,
        models_dir: str | Path | None = None,
        scale: float = 1.0,
        blend: bool = True,
        record: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        """``url``: the frame generator (``ws://HOST:WEBSOCKET_PORT/``); ``model``: the avatar.
        ``web_url`` (default: the same host, port 3000) serves the avatar's video, or
        ``models_dir`` holds it locally. ``scale`` resizes the frames. ``record``: write what
        is pushed, frames and voice, to this MP4. Other keyword arguments go to
        ``FrameProcessor``."""
        super().__init__(**kwargs)
        self._stream = AvatarStream(
            url,
            model,
            web_url=web_url,
            models_dir=models_dir,
            scale=scale,
            blend=blend,
            on_error=self._server_error,
        )
        self._record = None if record is None else Path(record)
        self._recording: Recording | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._held_stops: list[TTSStoppedFrame] = []
        self._playout_end = 0.0  # when the speech pushed so far has played, at real time
        self._speaking = False

    @property
    def pipeline_latency_ms(self) -> float | None:
        """How far the audio is held back behind the TTS (the session's, once started)."""
        return self._stream.pipeline_latency_ms

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._stop()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self._speaking = True
            await self._stream.push_audio(frame.audio, frame.sample_rate, frame.num_channels)
        elif isinstance(frame, TTSStoppedFrame) and self._speaking:
            self._speaking = False
            self._held_stops.append(frame)  # pushed after the utterance's last frame
            await self._stream.end_of_speech()
        elif isinstance(frame, (InterruptionFrame, UserStartedSpeakingFrame)):
            await self._interrupt()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _start(self) -> None:
        try:
            await self._stream.start()
        except LipstreamError as exc:
            await self.push_error(f"lipstream: {exc}", exception=exc, fatal=True)
            return
        if self._record is not None:
            self._recording = Recording(self._record, sample_rate=STREAM_RATE)
        self._tasks = [
            self.create_task(self._push_speech(), "lipstream-speech"),
            self.create_task(self._push_idle(), "lipstream-idle"),
        ]

    async def _stop(self) -> None:
        try:
            for task in self._tasks:
                await self.cancel_task(task)
            self._tasks = []
            await self._stream.close()
        finally:
            if self._recording is not None:
                recording, self._recording = self._recording, None
                try:
                    await asyncio.to_thread(recording.close)
                except Exception as exc:  # the pipeline ends either way
                    await self.push_error(f"lipstream: the recording failed: {exc}")

    async def _interrupt(self) -> None:
        self._speaking = False
        self._playout_end = 0.0
        if self._stream.compositor is not None:
            await self._stream.interrupt()
        stops, self._held_stops = self._held_stops, []
        for stop in stops:
            await self.push_frame(stop)

    async def _push_speech(self) -> None:
        async for item in self._stream.items():
            if isinstance(item, UtteranceEnd):
                if self._held_stops:
                    await self.push_frame(self._held_stops.pop(0))
                continue
            if item.epoch != self._stream.epoch:
                continue  # taken just before an interruption
            self._playout_end = max(self._playout_end, time.monotonic()) + FRAME_S
            image = _image(item)
            image.sync_with_audio = True  # shown once the audio before it has played
            await self.push_frame(image)
            if item.epoch == self._stream.epoch:
                await self.push_frame(TTSAudioRawFrame(item.audio, STREAM_RATE, 1))
                self._keep(item)
        await self.push_error("lipstream: the frame generator closed the session")

    async def _push_idle(self) -> None:
        tick = time.monotonic()
        while True:
            tick = max(tick + FRAME_S, time.monotonic() - FRAME_S)
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            if time.monotonic() >= self._playout_end:
                frame = self._stream.idle_frame()
                await self.push_frame(_image(frame))
                self._keep(frame)

    def _keep(self, frame: AvatarFrame) -> None:
        if self._recording is not None:
            self._recording.add(frame.image, frame.audio)

    async def _server_error(self, text: str) -> None:
        await self.push_error(f"lipstream: {text}")


def _image(frame: AvatarFrame) -> OutputImageRawFrame:
    height, width = frame.image.shape[:2]
    image = OutputImageRawFrame(image=frame.image.tobytes(), size=(width, height), format="RGB")
    image.metadata["lipstream"] = {
        "frame_id": frame.frame_id,
        "frame_index": frame.frame_index,
        "speaking": frame.speaking,
    }
    return image
