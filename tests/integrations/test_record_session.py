"""`lipstream record`: a running system speaks a file into an MP4 whose sound and picture agree."""

from __future__ import annotations

import math

import av
import numpy as np

from lipstream.audio.files import read_audio_file
from lipstream.cli import main

RATE = 24000


def decoded(path) -> tuple[int, np.ndarray]:
    """(video frames, the audio as float samples at 24 kHz) of an MP4."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        assert container.streams.audio[0].rate == RATE
        audio = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    return frames, audio


def test_a_recorded_session_plays_the_voice_where_its_frames_are(
    running_system, speech_wav, tmp_path, capsys
):
    out = tmp_path / "spoken.mp4"
    url, web = running_system.websocket_url, running_system.web_url
    argv = ["record", str(speech_wav), str(out), "--url", url, "--web-url", web, "--speed", "2"]
    assert main(argv) == 0
    speech = read_audio_file(speech_wav, RATE).samples.astype(np.float64) / 32768
    speaking = math.ceil(len(speech) / (RATE // 25))
    assert f"{speaking + 20} frames" in capsys.readouterr().out  # 0.4 s idle before and after

    frames, audio = decoded(out)
    assert frames == speaking + 20
    # the voice starts with the first speaking frame (frame 10, 0.4 s): find where it is
    start = 10 * RATE // 25
    window = speech[: RATE // 2]
    lags = range(-RATE // 20, RATE // 20)  # +-50 ms
    score = [np.dot(audio[start + lag : start + lag + len(window)], window) for lag in lags]
    best = lags[int(np.argmax(score))]
    assert abs(best) <= RATE // 1000, f"the voice is {best / RATE * 1000:.1f} ms off its frames"
    # and none of it outside the speaking frames
    outside = np.sum(audio[: start - RATE // 100] ** 2) + np.sum(
        audio[start + len(speech) + RATE // 25 :] ** 2
    )
    assert outside < 0.001 * np.sum(audio**2)


def test_a_speed_out_of_range_is_refused(running_system, speech_wav, tmp_path, capsys):
    url = running_system.websocket_url
    argv = ["record", str(speech_wav), str(tmp_path / "x.mp4"), "--url", url, "--speed", "50"]
    assert main(argv) == 2
    assert "speed must be between 0.1 and 10" in capsys.readouterr().err
