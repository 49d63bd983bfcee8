"""The LiveKit avatar's video generator, through the interface AvatarRunner drives: audio
pushed in, the buffer cleared, frames iterated. (No LiveKit server runs here: the room side,
DataStreamAudioReceiver and AvatarRunner's publishing, is livekit-agents' own.)"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from conftest import DEMO_PACKAGE
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator
from testkit.frames import avatar_rgb_frames

from lipstream.audio.files import read_audio_file
from lipstream.frames.client import AvatarStream
from lipstream.integrations.livekit import LipstreamVideoGenerator

AGENT_RATE = 48000  # an agent's TTS at its own rate, stereo: the generator mixes and resamples


def agent_audio(speech_wav, seconds: float) -> list[rtc.AudioFrame]:
    mono = read_audio_file(speech_wav, AGENT_RATE).samples[: int(seconds * AGENT_RATE)]
    stereo = np.repeat(mono[:, None], 2, axis=1)
    step = AGENT_RATE // 100  # 10 ms frames, as DataStreamAudioReceiver hands them on
    return [
        rtc.AudioFrame(stereo[i : i + step].tobytes(), AGENT_RATE, 2, len(stereo[i : i + step]))
        for i in range(0, len(stereo), step)
    ]


async def with_generator(system, scenario):
    stream = AvatarStream(system.websocket_url, "demo", web_url=system.web_url)
    await stream.start()
    try:
        generator = LipstreamVideoGenerator(stream)
        frames = generator.__aiter__()
        return await scenario(generator, frames, stream)
    finally:
        await stream.close()


async def take_until(frames, stop, timeout: float) -> list:
    seen: list = []
    async with asyncio.timeout(timeout):
        async for item in frames:
            seen.append(item)
            if stop(seen):
                return seen
    raise AssertionError("the generator ended")


def is_idle(frame) -> bool:
    image = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
    return any(np.array_equal(image, own) for own in avatar_rgb_frames(DEMO_PACKAGE))


def test_the_generator_is_what_avatar_runner_drives_and_publishes_at_25_fps(running_system):
    async def scenario(generator, frames, stream):
        assert isinstance(generator, VideoGenerator)
        options = generator.options
        assert (options.video_width, options.video_height, options.video_fps) == (512, 512, 25)
        assert (options.audio_sample_rate, options.audio_channels) == (24000, 1)
        started = time.monotonic()
        idle = await take_until(frames, lambda seen: len(seen) == 10, 30)
        assert time.monotonic() - started >= 0.3  # paced: 40 ms a frame, not as fast as it can
        assert all(isinstance(f, rtc.VideoFrame) and is_idle(f) for f in idle)

    asyncio.run(asyncio.wait_for(with_generator(running_system, scenario), 120))


def test_speech_gives_a_mouth_frame_and_its_voice_every_40_ms_then_the_segment_end(
    running_system, speech_wav
):
    async def scenario(generator, frames, stream):
        for frame in agent_audio(speech_wav, 1.0):
            await generator.push_audio(frame)
        await generator.push_audio(AudioSegmentEnd())
        ended = lambda seen: isinstance(seen[-1], AudioSegmentEnd)  # noqa: E731
        return await take_until(frames, ended, 60)

    seen = asyncio.run(asyncio.wait_for(with_generator(running_system, scenario), 120))
    voice = [i for i, f in enumerate(seen) if isinstance(f, rtc.AudioFrame)]
    assert len(voice) == 25  # one second of speech
    for i in voice:  # each right after its picture, 40 ms at 24 kHz mono
        assert isinstance(seen[i - 1], rtc.VideoFrame)
        assert (seen[i].sample_rate, seen[i].num_channels, seen[i].samples_per_channel) == (
            24000,
            1,
            960,
        )
    heard = np.concatenate([np.frombuffer(seen[i].data, np.int16) for i in voice])
    assert np.abs(heard).max() > 1000  # the voice, not silence


def test_clearing_the_buffer_stops_mouth_and_voice_at_once(running_system, speech_wav):
    async def scenario(generator, frames, stream):
        for frame in agent_audio(speech_wav, 2.5):
            await generator.push_audio(frame)
        speaking = lambda seen: isinstance(seen[-1], rtc.AudioFrame)  # noqa: E731
        await take_until(frames, speaking, 60)
        await generator.clear_buffer()
        return await take_until(frames, lambda seen: len(seen) == 25, 30), stream

    after, stream = asyncio.run(asyncio.wait_for(with_generator(running_system, scenario), 120))
    assert not [f for f in after if not isinstance(f, rtc.VideoFrame)]  # no voice, no end
    assert all(is_idle(f) for f in after)


@pytest.mark.parametrize("argv", [["livekit-avatar", "--help"]])
def test_the_worker_command_is_there(argv, capsys):
    from lipstream.cli import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    assert "lk.publish_on_behalf" in capsys.readouterr().out
