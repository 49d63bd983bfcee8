"""Reading a talking-head video: its pictures at 25 fps and its sound at 16 kHz, on one clock.

Any container and codec FFmpeg reads will do. ``frames_at_25fps`` takes one picture per 40 ms
by timestamp, whatever the source's frame rate, and turns pictures a phone stored sideways
upright; ``read_audio_track`` places the sound by its timestamps, so that sample 0 is heard with
frame 0 even when the sound track starts late or a packet is lost. A damaged packet is skipped
and counted (``DecodeStats``) rather than failing the whole read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from lipstream.audio.pcm import AudioChunk, float_to_pcm16
from lipstream.audio.resample import resample
from lipstream.audio.timeline import FPS, SAMPLE_RATE
from lipstream.errors import InvalidInput

# Half a microsecond of slack when comparing frame times, which are rounded to their time base.
_EPS = 5e-7


def _open(video: Path) -> Any:
    if not video.is_file():
        raise InvalidInput(f"video file not found: {video}")
    try:
        return av.open(str(video))
    except av.FFmpegError as exc:
        raise InvalidInput(f"{video} is not a readable video file: {exc}") from None


def _video_stream(container: Any, video: Path) -> Any:
    if not container.streams.video:
        raise InvalidInput(f"{video} has no video track")
    return container.streams.video[0]


def _audio_stream(container: Any, video: Path) -> Any:
    if not container.streams.audio:
        raise InvalidInput(f"{video} has no audio track: the dataset needs the speech")
    return container.streams.audio[0]


@dataclass
class DecodeStats:
    """What a read of a video skipped: packets the decoder refused (a damaged spot in a file)."""

    bad_packets: int = 0


def _decode(container: Any, stream: Any, stats: DecodeStats) -> Iterator[Any]:
    """Frames of one stream, skipping packets the decoder refuses (a damaged spot in a file)."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            stats.bad_packets += 1
            continue
        yield from frames


@dataclass(frozen=True)
class VideoInfo:
    """The video track's picture size in pixels, frame rate (fps) and duration (s)."""

    width: int
    height: int
    fps: float
    duration: float


def probe_video(video: Path) -> VideoInfo:
    """Check the file has video and audio tracks; size, frame rate and duration of the video."""
    with _open(video) as container:
        stream = _video_stream(container, video)
        _audio_stream(container, video)
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return VideoInfo(stream.width, stream.height, rate, duration)


def _upright(frame: Any) -> np.ndarray:
    image = frame.to_ndarray(format="bgr24")
    # Phones store portrait video sideways with a rotation tag; PyAV gives the counterclockwise
    # angle the picture must be turned by to be shown as recorded.
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def frames_at_25fps(
    video: str | Path, max_frames: int | None = None, stats: DecodeStats | None = None
) -> Iterator[np.ndarray]:
    """The video's BGR frames resampled to 25 fps by timestamp.

    Output frame ``k`` is the source frame on screen at ``t = k / 25`` s after the first frame:
    the last one whose presentation time is at or before ``t``. The last source frame stays on
    screen for its own duration, so the output ends where the video ends.
    """
    video = Path(video)
    stats = stats if stats is not None else DecodeStats()
    limit = math.inf if max_frames is None else max_frames
    with _open(video) as container:
        stream = _video_stream(container, video)
        stream.thread_type = "AUTO"
        step = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / FPS
        time_base = float(stream.time_base) if stream.time_base else 0.0
        t0: float | None = None
        shown: Any = None
        shown_image: np.ndarray | None = None
        shown_at = 0.0
        k = 0
        try:
            for index, frame in enumerate(_decode(container, stream, stats)):
                t = frame.time if frame.time is not None else index * step
                if t0 is None:
                    t0 = t
                t -= t0
                while shown is not None and k < limit and k / FPS < t - _EPS:
                    if shown_image is None:  # convert only frames that are used, once
                        shown_image = _upright(shown)
                    yield shown_image
                    k += 1
                if k >= limit:
                    return
                shown, shown_image, shown_at = frame, None, t
            if shown is None:
                return
            duration = getattr(shown, "duration", None)
            end = shown_at + (duration * time_base if duration and time_base else step)
            while k < limit and k / FPS < end - _EPS:
                if shown_image is None:
                    shown_image = _upright(shown)
                yield shown_image
                k += 1
        except av.FFmpegError as exc:
            raise InvalidInput(f"{video} is not a readable video file: {exc}") from None


def _first_video_time(video: Path) -> float:
    """When the first picture is shown: time 0 of the dataset, for the audio as for the frames."""
    with _open(video) as container:
        if not container.streams.video:
            return 0.0
        for frame in _decode(container, container.streams.video[0], DecodeStats()):
            return float(frame.time) if frame.time is not None else 0.0
    return 0.0


def read_audio_track(
    video: str | Path, max_seconds: float | None = None, stats: DecodeStats | None = None
) -> AudioChunk:
    """The first audio track at 16 kHz mono, sample 0 at the time of the first video frame.

    Decoded frames are placed by their timestamps, so audio that starts late, a dropped packet or
    a track that starts before the picture keep their places against the frames.
    """
    video = Path(video)
    stats = stats if stats is not None else DecodeStats()
    t0 = _first_video_time(video)
    with _open(video) as container:
        stream = _audio_stream(container, video)
        rate = int(stream.rate or stream.codec_context.sample_rate)
        tolerance = rate // 1000  # a millisecond: timestamp rounding, not a real gap
        end = math.inf if max_seconds is None else max_seconds + 1.0
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts: list[tuple[int, np.ndarray]] = []
        cursor = 0
        try:
            for frame in _decode(container, stream, stats):
                start = cursor
                if frame.time is not None:
                    start = round((frame.time - t0) * rate)
                    if abs(start - cursor) <= tolerance:
                        start = cursor
                for out in mono.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    parts.append((start, samples))
                    start += len(samples)
                cursor = start
                if cursor / rate > end:
                    break
        except av.FFmpegError as exc:
            raise InvalidInput(f"{video}: the audio track cannot be decoded: {exc}") from None
    if not parts:
        raise InvalidInput(f"{video}: the audio track holds no decodable audio")
    length = max(start + len(samples) for start, samples in parts)
    signal = np.zeros(max(length, 0), dtype=np.float32)
    for start, samples in parts:
        lo = max(start, 0)  # audio before the first picture is cut off
        if start + len(samples) > lo:
            signal[lo : start + len(samples)] = samples[lo - start :]
    resampled = resample(signal, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else signal
    return AudioChunk(float_to_pcm16(np.clip(resampled, -1.0, 1.0)), SAMPLE_RATE)
