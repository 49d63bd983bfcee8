"""Recording to MP4: H.264 and AAC, each frame's audio where the frame is, whatever was dropped."""

from __future__ import annotations

import queue
from unittest import mock

import av
import numpy as np
import pytest

from lipstream.errors import InvalidInput
from lipstream.recording import Recording

RATE = 24000
SAMPLES = RATE // 25
MARKS = (20, 61)  # frames that are white and carry a tone


def tone() -> bytes:
    t = np.arange(SAMPLES) / RATE
    return (np.sin(2 * np.pi * 1000 * t) * 12000).astype("<i2").tobytes()


def record(path, frames: int = 75, drop: tuple[int, ...] = ()) -> Recording:
    recording = Recording(path, sample_rate=RATE)
    real_put = recording._queue.put_nowait
    added = iter(range(frames))

    def put(item):  # the writer "falls behind" on the frames in ``drop``
        if next(added) in drop:
            raise queue.Full
        real_put(item)

    with mock.patch.object(recording._queue, "put_nowait", side_effect=put):
        for k in range(frames):
            white = k in MARKS
            image = np.full((96, 128, 3), 255 if white else 0, np.uint8)
            recording.add(image, tone() if white else b"")
    recording.close()
    return recording


def marks_in(path) -> tuple[list[float], list[float]]:
    """(times of the white frames, times the tone starts) as decoded from the file."""
    with av.open(str(path)) as container:
        streams = [(s.type, s.codec_context.name) for s in container.streams]
        assert streams == [("video", "h264"), ("audio", "aac")]
        white = [
            f.time for f in container.decode(video=0) if f.to_ndarray(format="gray").mean() > 128
        ]
    with av.open(str(path)) as container:
        chunks = [(f.time, f.to_ndarray()[0]) for f in container.decode(audio=0)]
    times = np.concatenate([t + np.arange(len(a)) / RATE for t, a in chunks])
    loud = np.abs(np.concatenate([a for _, a in chunks])) > 0.1
    starts = times[1:][loud[1:] & ~loud[:-1]]
    return white, [float(t) for t in starts if not any(0 < t - s < 0.03 for s in starts)]


def test_each_frame_and_its_audio_play_at_the_same_time(tmp_path):
    recording = record(tmp_path / "session.mp4")
    assert (recording.frames_written, recording.dropped) == (75, 0)
    white, tones = marks_in(recording.path)
    assert white == pytest.approx([k * 0.04 for k in MARKS], abs=1e-3)
    assert tones == pytest.approx(white, abs=0.005)


def test_a_dropped_frame_costs_its_picture_and_sound_but_not_the_sync(tmp_path):
    recording = record(tmp_path / "dropped.mp4", drop=(10, 11, 40))
    assert (recording.frames_written, recording.dropped) == (72, 3)
    white, tones = marks_in(recording.path)
    assert white == pytest.approx([k * 0.04 for k in MARKS], abs=1e-3)  # still at 40k ms
    assert tones == pytest.approx(white, abs=0.005)


def test_bad_frames_are_refused_with_what_is_accepted(tmp_path):
    recording = Recording(tmp_path / "bad.mp4", sample_rate=RATE)
    with pytest.raises(InvalidInput, match=r"RGB uint8 \[H, W, 3\]"):
        recording.add(np.zeros((8, 8), np.uint8))
    with pytest.raises(InvalidInput, match="at most 960 PCM16 samples"):
        recording.add(np.zeros((8, 8, 3), np.uint8), bytes(2 * SAMPLES + 2))
    recording.close()
    with pytest.raises(InvalidInput, match="is closed"):
        recording.add(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InvalidInput, match="multiple of 25"):
        Recording(tmp_path / "odd.mp4", sample_rate=22049)
