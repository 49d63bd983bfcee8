"""The avatar as a pair of WebRTC tracks: composited video and the voice, one clock for both.

``AvatarOutput`` ticks at 25 fps. Each tick it takes the next speaking frame of an
``AvatarStream`` (with its 40 ms of the voice) or, when none is ready, the avatar's own frame
and 40 ms of silence. The picture goes to the video track and the sound to the audio track,
both stamped from the tick: video frame ``k`` has pts ``3600k`` (90 kHz) and its audio starts
at sample ``960k`` (24 kHz). A receiver that plays the two by their RTP timestamps plays them
in sync.

A speech run starts once ``PREBUFFER_FRAMES`` frames are waiting, or the first has waited
``PREBUFFER_S``. That absorbs the frame generator's jitter. A frame that is still late makes
the run wait one tick: an idle frame and silence go out, and the voice resumes a tick later,
whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from lipstream.audio.pcm import av_frame
from lipstream.errors import LipstreamError
from lipstream.frames.client import (
    FRAME_S,
    FRAME_SAMPLES,
    STREAM_RATE,
    AvatarFrame,
    AvatarStream,
)
from lipstream.recording import Recording

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
PREBUFFER_FRAMES = 2
PREBUFFER_S = 0.08
RUN_GAP_TICKS = 3  # empty ticks that end a speech run (fewer are a late frame)
MAX_QUEUED = 50  # frames a track keeps for a receiver that does not read (2 s)
_HALF = FRAME_SAMPLES // 2  # audio goes out in 20 ms frames, as Opus wants them


class AvatarOutput:
    """One peer's clock: the video and audio tracks it feeds, and what it has sent."""

    def __init__(self, stream: AvatarStream, recording: Recording | None = None) -> None:
        """``recording``: also write every tick's frame and audio there (``stop`` closes it)."""
        self.stream = stream
        self.recording = recording
        self.on_end: Callable[[], object] | None = None  # called when the session ends
        self.video = AvatarTrack("video", self)
        self.audio = AvatarTrack("audio", self)
        self.ticks = 0
        self.speaking_frames = 0
        self.late_ticks = 0  # ticks of a speech run that found no frame ready
        self._waiting: deque[AvatarFrame] = deque()
        self._task: asyncio.Task[None] | None = None
        self._run_started_at: float | None = None
        self._running = False
        self._ending = False
        self._empty_ticks = 0

    def start(self) -> None:
        """Start the clock (on the first ``recv`` of either track: both begin together)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def clear(self) -> None:
        """An interruption: drop every frame not yet sent."""
        self._end_run()
        for track in (self.video, self.audio):
            track.drain()

    def _end_run(self) -> None:
        self._waiting.clear()
        self._running = False
        self._run_started_at = None
        self._empty_ticks = 0

    async def stop(self) -> None:
        """Stop the clock and the tracks, and finish the recording (a failed recording is
        logged: the call is over either way)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for track in (self.video, self.audio):
            track.stop()
        if self.recording is not None:
            recording, self.recording = self.recording, None
            try:
                await asyncio.to_thread(recording.close)
            except Exception as exc:
                log.warning("the recording %s failed: %s", recording.path, exc)

    async def _run(self) -> None:
        started = time.monotonic()
        try:
            while True:
                self._tick(self.ticks)
                self.ticks += 1
                await asyncio.sleep(max(0.0, started + self.ticks * FRAME_S - time.monotonic()))
        except LipstreamError:  # the frame generator closed the session: so ends the call
            for track in (self.video, self.audio):
                track.stop()
            if self.on_end is not None:
                self.on_end()

    def _tick(self, k: int) -> None:
        while (item := self.stream.poll()) is not None:
            if not isinstance(item, AvatarFrame):
                self._ending = True  # the utterance's last frame is waiting
            elif item.epoch == self.stream.epoch:
                self._waiting.append(item)
        if self._ending and not self._waiting:
            self._ending = False
            self._end_run()
        frame = self._next_speaking()
        if frame is None:
            frame = self.stream.idle_frame()
        else:
            self.speaking_frames += 1
        if self.recording is not None:
            self.recording.add(frame.image, frame.audio)
        picture = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        picture.pts = k * VIDEO_CLOCK // 25
        picture.time_base = Fraction(1, VIDEO_CLOCK)
        self.video.put(picture)
        samples = np.zeros(FRAME_SAMPLES, np.int16)
        voice = np.frombuffer(frame.audio, "<i2")
        samples[: len(voice)] = voice
        for half in range(2):
            part = samples[half * _HALF : (half + 1) * _HALF]
            self.audio.put(av_frame(part, STREAM_RATE, k * FRAME_SAMPLES + half * _HALF))

    def _next_speaking(self) -> AvatarFrame | None:
        if not self._waiting:
            if self._running:
                self._empty_ticks += 1
                if self._empty_ticks > RUN_GAP_TICKS:
                    self._end_run()  # the run is over: the next one prebuffers again
                else:
                    self.late_ticks += 1
            return None
        if not self._running:
            now = time.monotonic()
            if self._run_started_at is None:
                self._run_started_at = now
            ready = len(self._waiting) >= PREBUFFER_FRAMES
            if not ready and now - self._run_started_at < PREBUFFER_S:
                return None
            self._running = True
        self._empty_ticks = 0
        return self._waiting.popleft()


class AvatarTrack(MediaStreamTrack):
    """The video or audio half of an ``AvatarOutput``."""

    def __init__(self, kind: str, output: AvatarOutput) -> None:
        super().__init__()
        self.kind = kind
        self._output = output
        self._queue: asyncio.Queue[av.VideoFrame | av.AudioFrame | None] = asyncio.Queue()
        self.dropped = 0

    def put(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        limit = MAX_QUEUED * (2 if self.kind == "audio" else 1)
        while self._queue.qsize() >= limit:  # a receiver that does not read loses the oldest
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    def drain(self) -> None:
        """Drop what the sender has not taken yet."""
        while not self._queue.empty():
            if self._queue.get_nowait() is None:  # the end: keep it
                self._queue.put_nowait(None)
                break

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._output.start()
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        self._queue.put_nowait(None)
        super().stop()
