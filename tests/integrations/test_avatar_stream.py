"""AvatarStream, the framework-free client: where it finds things, and its clear failures."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from lipstream.audio.files import read_audio_file
from lipstream.compositor import Compositor, decode_video
from lipstream.errors import InvalidInput, LipstreamError
from lipstream.frames.client import STREAM_RATE, AvatarStream, UtteranceEnd, web_url_for
from lipstream.model.package import load_package


def test_the_web_server_is_looked_for_beside_the_frame_generator():
    assert web_url_for("ws://10.1.2.3:8080/") == "http://10.1.2.3:3000"
    assert web_url_for("wss://avatar.example:9443/?token=x") == "https://avatar.example:3000"
    assert web_url_for("ws://[::1]:8080") == "http://[::1]:3000"
    with pytest.raises(InvalidInput, match="ws:// or wss://"):
        web_url_for("http://127.0.0.1:8080/")


def test_an_unreachable_frame_generator_is_named():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stream = AvatarStream(f"ws://127.0.0.1:{port}/", open_timeout=5)
    with pytest.raises(
        LipstreamError, match=f"cannot reach the frame generator at ws://127.0.0.1:{port}"
    ):
        asyncio.run(stream.start())


def test_an_unknown_model_is_refused_with_the_servers_reason(running_system):
    async def start() -> None:
        stream = AvatarStream(
            running_system.websocket_url, "nobody", web_url=running_system.web_url
        )
        try:
            await stream.start()
        finally:
            await stream.close()

    with pytest.raises(LipstreamError, match="unknown_model"):
        asyncio.run(asyncio.wait_for(start(), 60))


def test_audio_that_is_not_whole_samples_is_refused(running_system):
    async def push() -> None:
        stream = AvatarStream(running_system.websocket_url, web_url=running_system.web_url)
        await stream.start()
        try:
            with pytest.raises(InvalidInput, match="whole PCM16 samples of 2 channel"):
                await stream.push_audio(b"\x00" * 6, 16000, channels=2)
            frame = stream.idle_frame()
            assert frame.image.shape == (512, 512, 3) and frame.audio == b""
        finally:
            await stream.close()

    asyncio.run(asyncio.wait_for(push(), 60))


def test_a_compositor_from_a_fetched_video_needs_the_mouths_bounds(demo_package):
    package = load_package(demo_package)
    video = decode_video(package.video_path, scale=0.5)
    assert video.frames.shape == (package.frame_count, 256, 256, 3)
    compositor = Compositor(None, video=video, name="demo")
    mouth = np.full((320, 320, 3), 255, np.uint8)
    with pytest.raises(InvalidInput, match="needs its bounds"):
        compositor.compose(0, mouth)
    drawn = compositor.compose(0, mouth, package.bounds[0])
    assert not np.array_equal(drawn, compositor.idle(0))
    with pytest.raises(ValueError, match="a package or the avatar's decoded video"):
        Compositor(None)


def test_a_burst_beyond_the_servers_buffer_is_paced_and_utterances_end_in_order(
    start_system, models_dir, speech_wav
):
    system = start_system(models_dir=models_dir, audio_buffer_size=1000)  # 1 s of audio at most
    speech = read_audio_file(speech_wav, STREAM_RATE).samples  # 3 s, sent at once
    errors: list[str] = []

    async def speak() -> list:
        async def refused(text: str) -> None:
            errors.append(text)

        stream = AvatarStream(system.websocket_url, web_url=system.web_url, on_error=refused)
        await stream.start()
        try:
            await stream.push_audio(speech.tobytes(), STREAM_RATE)
            await stream.end_of_speech()
            await stream.push_audio(speech[: STREAM_RATE // 2].tobytes(), STREAM_RATE)
            await stream.end_of_speech()  # a second utterance right behind the first
            got: list = []
            async with asyncio.timeout(60):
                async for item in stream.items():
                    got.append(item)
                    if sum(isinstance(i, UtteranceEnd) for i in got) == 2:
                        return got
        finally:
            await stream.close()
        return got

    got = asyncio.run(speak())
    assert not errors  # nothing refused: the stream held what the server had no room for
    ends = [i for i, item in enumerate(got) if isinstance(item, UtteranceEnd)]
    first, second = got[: ends[0]], got[ends[0] + 1 : ends[1]]
    assert len(first) == 75 and len(second) == 13  # ceil(2990 / 40) and ceil(500 / 40)
    indices = [f.frame_index for f in first + second]
    assert indices == list(range(indices[0], indices[0] + 88))
    heard = np.concatenate([np.frombuffer(f.audio, "<i2") for f in first])[: len(speech)]
    assert np.corrcoef(heard.astype(float), speech.astype(float))[0, 1] > 0.99  # its own voice
