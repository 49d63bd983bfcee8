"""lipstream as a LiveKit Agents avatar worker.

LiveKit's avatar contract: the agent sends its voice to the avatar participant as the
``lk.audio_stream`` byte stream, calls the ``lk.clear_buffer`` RPC on an interruption, and
hears back ``lk.playback_finished`` with ``{playback_position, interrupted}``. The avatar joins
the room with the ``lk.publish_on_behalf`` attribute, so its video and audio stand for the
agent. ``livekit-agents`` implements the contract in ``AvatarRunner`` and
``DataStreamAudioReceiver``; lipstream is their video generator:

- ``LipstreamVideoGenerator`` (a ``VideoGenerator``): the voice goes to lipstream's frame
  generator; out come the avatar's composited frames, each followed by its 40 ms of the
  voice, at 25 fps; ``AudioSegmentEnd`` after each utterance's last frame; idle frames in
  silence. ``clear_buffer`` interrupts the session at once.
- ``run_avatar_worker`` / ``lipstream livekit-avatar``: joins a room with a token the agent
  minted and runs the two together.

Install with ``pip install 'lipstream[livekit]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator

from livekit import rtc
from livekit.agents.voice.avatar import (
    AudioSegmentEnd,
    AvatarOptions,
    AvatarRunner,
    DataStreamAudioReceiver,
    VideoGenerator,
)

from lipstream.audio.timeline import FPS
from lipstream.frames.client import (
    FRAME_S,
    FRAME_SAMPLES,
    STREAM_RATE,
    AvatarFrame,
    AvatarStream,
    UtteranceEnd,
)
from lipstream.integrations.stream_args import add_stream_arguments, stream_from_args

log = logging.getLogger(__name__)


class LipstreamVideoGenerator(VideoGenerator):
    """The frames and voice of one lipstream session, for ``AvatarRunner``."""

    def __init__(self, stream: AvatarStream) -> None:
        """``stream``: a started ``AvatarStream``."""
        if stream.compositor is None:
            raise RuntimeError("start() the AvatarStream first")
        self.stream = stream
        self.width = stream.compositor.width
        self.height = stream.compositor.height

    @property
    def options(self) -> AvatarOptions:
        """What ``AvatarRunner`` publishes: the avatar video's size, 25 fps, 24 kHz mono."""
        return AvatarOptions(
            video_width=self.width,
            video_height=self.height,
            video_fps=FPS,
            audio_sample_rate=STREAM_RATE,
            audio_channels=1,
        )

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            await self.stream.end_of_speech()
        else:
            await self.stream.push_audio(bytes(frame.data), frame.sample_rate, frame.num_channels)

    async def clear_buffer(self) -> None:
        await self.stream.interrupt()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        tick = time.monotonic()
        while True:
            item = await self.stream.get(timeout=max(0.0, tick - time.monotonic()))
            if isinstance(item, UtteranceEnd):
                yield AudioSegmentEnd()
            elif isinstance(item, AvatarFrame):
                if item.epoch != self.stream.epoch:
                    continue
                yield self._video(item)
                yield rtc.AudioFrame(item.audio, STREAM_RATE, 1, FRAME_SAMPLES)
                tick = time.monotonic() + FRAME_S
            else:  # nobody speaks: the avatar's own frame, every 40 ms
                yield self._video(self.stream.idle_frame())
                tick = max(tick + FRAME_S, time.monotonic())

    def _video(self, frame: AvatarFrame) -> rtc.VideoFrame:
        data = frame.image.tobytes()
        return rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.RGB24, data)


async def run_avatar_worker(livekit_url: str, token: str, stream: AvatarStream) -> None:
    """Join the room as the avatar (``token`` carries ``lk.publish_on_behalf``) and publish
    lipstream's frames and the agent's voice until the room closes."""
    await stream.start()
    room = rtc.Room()
    closed = asyncio.Event()
    room.on("disconnected", lambda *_: closed.set())
    generator = LipstreamVideoGenerator(stream)
    runner = AvatarRunner(
        room,
        audio_recv=DataStreamAudioReceiver(room),
        video_gen=generator,
        options=generator.options,
    )
    try:
        await room.connect(livekit_url, token)
        await runner.start()
        await closed.wait()
    finally:
        await runner.aclose()
        await room.disconnect()
        await stream.close()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``livekit-avatar`` subcommand."""
    p = subparsers.add_parser(
        "livekit-avatar",
        help="join a LiveKit room as a voice agent's avatar (needs lipstream[livekit])",
        description="Join a LiveKit room with TOKEN (minted by the agent, with the "
        "lk.publish_on_behalf attribute) and publish the avatar's video and the agent's voice, "
        "in sync, from a running lipstream (docs/voice-agents.md).",
    )
    p.add_argument("--livekit-url", required=True, help="wss://... of the LiveKit server")
    p.add_argument("--token", required=True, help="the avatar participant's access token")
    add_stream_arguments(p)
    p.set_defaults(func=_cmd_livekit_avatar)


def _cmd_livekit_avatar(args: argparse.Namespace) -> int:
    stream = stream_from_args(args)
    asyncio.run(run_avatar_worker(args.livekit_url, args.token, stream))
    return 0
