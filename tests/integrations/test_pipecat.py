"""LipstreamVideoService in a real Pipecat pipeline, fed a speech file, against the running
services: composited frames, the TTS audio re-timed beside them, idle frames, interruptions."""

from __future__ import annotations

import asyncio
import time

import av
import numpy as np
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner
from testkit.frames import avatar_rgb_frames

from lipstream.audio.files import read_audio_file
from lipstream.frames.client import STREAM_RATE
from lipstream.integrations.pipecat import LipstreamVideoService
from lipstream.model.package import load_package

TTS_RATE = 16000  # a rate of its own: the service resamples
CHUNK = TTS_RATE // 50  # 20 ms per TTS frame


class Recorder(FrameProcessor):
    """The end of the pipeline (or its start, for errors sent upstream): keeps what arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.seen.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)

    def images(self, after: int = 0) -> list[OutputImageRawFrame]:
        return [f for _, f in self.seen[after:] if isinstance(f, OutputImageRawFrame)]


async def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.02)


def tts_frames(samples: np.ndarray) -> list[Frame]:
    chunks = [samples[i : i + CHUNK] for i in range(0, len(samples), CHUNK)]
    return [TTSAudioRawFrame(c.astype("<i2").tobytes(), TTS_RATE, 1) for c in chunks]


def speaking(image: OutputImageRawFrame) -> bool:
    return image.metadata["lipstream"]["speaking"]


def pixels(image: OutputImageRawFrame) -> np.ndarray:
    width, height = image.size
    return np.frombuffer(image.image, np.uint8).reshape(height, width, 3)


async def run_pipeline(system, scenario, record=None) -> tuple[Recorder, Recorder]:
    errors, out = Recorder(), Recorder()
    avatar = LipstreamVideoService(
        url=system.websocket_url, model="demo", web_url=system.web_url, record=record
    )
    task = PipelineWorker(
        Pipeline([errors, avatar, out]),
        params=PipelineParams(audio_out_sample_rate=STREAM_RATE),
        enable_rtvi=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    running = asyncio.create_task(runner.run())
    try:
        await wait_for(lambda: out.images(), 30, "the first idle frame")
        await scenario(task, out)
    finally:
        await task.cancel()
        await asyncio.wait_for(running, 30)
    upstream_errors = [f for _, f in errors.seen if isinstance(f, ErrorFrame)]
    assert not upstream_errors, upstream_errors
    return errors, out


@pytest.fixture(scope="module")
def idle_frames(demo_package):
    """The avatar's own frames, RGB, by frame_id."""
    return avatar_rgb_frames(demo_package)


def test_speech_becomes_25_mouth_frames_a_second_each_with_its_audio_then_idle(
    running_system, speech_wav, idle_frames, demo_package, tmp_path
):
    speech = read_audio_file(speech_wav, TTS_RATE).samples[: 2 * TTS_RATE]  # 2 s: 50 frames
    marks: dict[str, int] = {}

    async def speak(task, out):
        marks["start"] = len(out.seen)
        await task.queue_frames([TTSStartedFrame(), *tts_frames(speech), TTSStoppedFrame()])
        stopped = lambda: any(isinstance(f, TTSStoppedFrame) for _, f in out.seen)  # noqa: E731
        await wait_for(stopped, 60, "the utterance's last frame")
        marks["stopped"] = len(out.seen)
        await wait_for(lambda: len(out.images(marks["stopped"])) >= 10, 30, "idle frames")

    record = tmp_path / "bot.mp4"
    _, out = asyncio.run(asyncio.wait_for(run_pipeline(running_system, speak, record), 180))

    talk = out.seen[marks["start"] : marks["stopped"]]
    images = [f for _, f in talk if isinstance(f, OutputImageRawFrame) and speaking(f)]
    indices = [image.metadata["lipstream"]["frame_index"] for image in images]
    assert indices == list(range(indices[0], indices[0] + 50))  # 25 images per second of speech
    # each mouth frame is followed by its own 40 ms of the speech, re-timed at 24 kHz
    frames = [f for _, f in talk]
    for image in images:
        audio = frames[frames.index(image) + 1]
        assert isinstance(audio, TTSAudioRawFrame)
        assert (audio.sample_rate, audio.num_frames) == (STREAM_RATE, STREAM_RATE // 25)
    played = np.concatenate(
        [np.frombuffer(frames[frames.index(i) + 1].audio, "<i2") for i in images]
    ).astype(float)
    assert np.sqrt(np.mean(played**2)) > 0.3 * np.sqrt(np.mean(speech.astype(float) ** 2))

    # the mouth moves: it differs from the avatar's own frame, and by how much changes
    bounds = load_package(demo_package).bounds
    change = []
    for image in images:
        frame_id = image.metadata["lipstream"]["frame_id"]
        x0, y0, x1, y1 = (int(v) for v in bounds[frame_id])
        own = idle_frames[frame_id][y0:y1, x0:x1].astype(float)
        change.append(np.abs(pixels(image)[y0:y1, x0:x1] - own).mean())
    assert np.median(change) > 2.0 and np.std(change) > 0.3, change

    # after the speech: the avatar's own frames, untouched
    after = out.images(marks["stopped"])
    assert after and not any(speaking(image) for image in after)
    for image in after:
        assert np.array_equal(pixels(image), idle_frames[image.metadata["lipstream"]["frame_id"]])

    # the recording holds every pushed frame, and the voice only where the mouth frames are
    shown = out.images()
    first = shown.index(images[0])
    with av.open(str(record)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(shown)
    with av.open(str(record)) as container:
        voice = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    span = slice(first * 960, (first + len(images)) * 960)
    assert np.sum(voice[span] ** 2) > 0.99 * np.sum(voice**2)


def test_an_interruption_stops_the_mouth_at_once_and_the_next_speech_plays(
    running_system, speech_wav
):
    speech = read_audio_file(speech_wav, TTS_RATE).samples  # 3 s, more than is let play
    marks: dict[str, int] = {}

    async def interrupt(task, out):
        await task.queue_frames([TTSStartedFrame(), *tts_frames(speech)])
        talking = lambda: any(speaking(i) for i in out.images())  # noqa: E731
        await wait_for(talking, 60, "the first mouth frame")
        marks["interrupt"] = len(out.seen)
        await task.queue_frame(InterruptionFrame())
        await wait_for(
            lambda: any(isinstance(f, InterruptionFrame) for _, f in out.seen),
            10,
            "the interruption",
        )
        marks["interrupted"] = len(out.seen)
        await asyncio.sleep(1.0)  # the interrupted speech had seconds left
        marks["again"] = len(out.seen)
        short = speech[: TTS_RATE // 2]  # half a second: 13 frames
        await task.queue_frames([TTSStartedFrame(), *tts_frames(short), TTSStoppedFrame()])

        def stopped() -> bool:
            return any(isinstance(f, TTSStoppedFrame) for _, f in out.seen[marks["again"] :])

        await wait_for(stopped, 60, "the next utterance's last frame")
        marks["end"] = len(out.seen)

    _, out = asyncio.run(asyncio.wait_for(run_pipeline(running_system, interrupt), 180))

    after = out.seen[marks["interrupted"] : marks["again"]]
    assert [f for _, f in after if isinstance(f, OutputImageRawFrame)], "no frames after it"
    assert not [f for _, f in after if isinstance(f, OutputImageRawFrame) and speaking(f)]
    assert not [f for _, f in after if isinstance(f, TTSAudioRawFrame)]  # nor its audio
    spoken = out.seen[marks["again"] : marks["end"]]
    images = [f for _, f in spoken if isinstance(f, OutputImageRawFrame) and speaking(f)]
    audio = [f for _, f in spoken if isinstance(f, TTSAudioRawFrame)]
    assert len(images) == len(audio) == 13
