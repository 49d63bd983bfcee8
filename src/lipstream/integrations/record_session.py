"""``lipstream record``: a running system speaks an audio file, recorded to MP4.

The file is streamed to the frame generator at real-time pace (or ``speed`` times it), as a
voice agent's TTS would be. The frames that come back are composited and written, each with
its 40 ms of the audio, by a ``Recording``: idle frames first and last, and the speaking frames
in sync with the voice between them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from lipstream.audio.files import read_audio_file
from lipstream.errors import InvalidInput, LipstreamError
from lipstream.frames.client import (
    FRAME_SAMPLES,
    STREAM_RATE,
    AvatarFrame,
    AvatarStream,
)
from lipstream.integrations.stream_args import add_stream_arguments, stream_from_args
from lipstream.recording import Recording


@dataclass(frozen=True)
class RecordedSession:
    path: Path
    frames: int  # frames in the file
    speaking_frames: int
    dropped: int  # frames the writer could not keep up with
    pipeline_latency_ms: float | None


async def record_speech(
    stream: AvatarStream,
    audio: str | Path,
    out: str | Path,
    *,
    speed: float = 1.0,
    idle_s: float = 0.4,
    timeout_s: float = 120.0,
) -> RecordedSession:
    """Speak ``audio`` through ``stream`` (started here, closed after) and record it."""
    if not 0.1 <= speed <= 10:
        raise InvalidInput(f"speed must be between 0.1 and 10 times real time, got {speed}")
    samples = read_audio_file(audio, STREAM_RATE).samples
    errors: list[str] = []

    async def on_error(text: str) -> None:
        errors.append(text)

    stream.on_error = on_error
    await stream.start()
    recording = Recording(out, sample_rate=STREAM_RATE)
    speaking = 0
    sender: asyncio.Task[None] | None = None
    try:
        idle = [stream.idle_frame() for _ in range(round(idle_s * 25))]
        for frame in idle:
            recording.add(frame.image)
        sender = asyncio.create_task(_send(stream, samples.tobytes(), speed))
        async with asyncio.timeout(timeout_s + len(samples) / STREAM_RATE / speed):
            async for item in stream.items():
                if errors:
                    raise LipstreamError(f"the frame generator said: {errors[0]}")
                if not isinstance(item, AvatarFrame):
                    break  # the utterance's end
                recording.add(item.image, item.audio)
                speaking += 1
            else:
                said = f": {errors[0]}" if errors else ""
                raise LipstreamError(f"the frame generator closed the session mid-speech{said}")
        await sender
        for frame in [stream.idle_frame() for _ in range(round(idle_s * 25))]:
            recording.add(frame.image)
    except TimeoutError:
        raise LipstreamError(f"no end of the speech within {timeout_s} s") from None
    finally:
        if sender is not None:
            sender.cancel()
        await stream.close()
        path = await asyncio.to_thread(recording.close)
    return RecordedSession(
        path,
        recording.frames_written,
        speaking,
        recording.dropped,
        stream.pipeline_latency_ms,
    )


async def _send(stream: AvatarStream, pcm: bytes, speed: float) -> None:
    """40 ms chunks at ``speed`` times real time, then the end of speech."""
    step = FRAME_SAMPLES * 2
    started = time.monotonic()
    for i, at in enumerate(range(0, len(pcm), step)):
        await asyncio.sleep(max(0.0, started + i * 0.04 / speed - time.monotonic()))
        await stream.push_audio(pcm[at : at + step], STREAM_RATE)
    await stream.end_of_speech()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``record`` subcommand."""
    p = subparsers.add_parser(
        "record",
        help="record a running system speaking an audio file, to MP4",
        description="Stream AUDIO to a running frame generator as a live voice would be, and "
        "write the avatar it answers with, composited, to OUT (H.264 and AAC, in sync).",
    )
    p.add_argument("audio", type=Path, help="speech (wav, mp3, ogg, or any video with sound)")
    p.add_argument("out", type=Path, help="the .mp4 to write")
    add_stream_arguments(p)
    p.add_argument("--speed", type=float, default=1.0, help="times real time (default 1)")
    p.set_defaults(func=_cmd_record)


def _cmd_record(args: argparse.Namespace) -> int:
    stream = stream_from_args(args)
    done = asyncio.run(record_speech(stream, args.audio, args.out, speed=args.speed))
    print(
        f"wrote {done.path}: {done.frames} frames ({done.frames / 25:.2f} s), "
        f"{done.speaking_frames} speaking, {done.dropped} dropped, "
        f"pipeline latency {done.pipeline_latency_ms} ms"
    )
    return 0
