"""WebRTC out: a real aiortc client calls the running system (in the test network), speaks a
recording, and gets the composited avatar and its own voice back as one synced pair."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import av
import numpy as np
from conftest import DEMO_PACKAGE, LONG_SPEECH_WAV
from testkit.frames import avatar_rgb_frames
from testkit.webrtc_client import RATE, Call

from lipstream.audio.files import read_audio_file
from lipstream.model.package import load_package

WEB_URL = "http://127.0.0.1:3000"
BEEP_S = 0.06
SETTLE_S = 0.5  # after an interruption, what was already on its way may still arrive


def voice(speech_wav) -> np.ndarray:
    """A beep that marks where the voice starts, then the speech (then silence)."""
    t = np.arange(int(BEEP_S * RATE)) / RATE
    beep = (np.sin(2 * np.pi * 1000 * t) * 16000).astype(np.int16)
    return np.concatenate([beep, read_audio_file(speech_wav, RATE).samples])


def boxes() -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(the mouth: the lower half of the demo's crop boxes; the face above the crop boxes)."""
    bounds = np.asarray(load_package(DEMO_PACKAGE).bounds)
    x0, y0, x1, y1 = bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()
    half = (y1 - y0) // 2
    mouth = (slice(int(y0 + half), int(y1)), slice(int(x0), int(x1)))
    above = (slice(int(y0 - half), int(y0)), slice(int(x0), int(x1)))
    return mouth, above


def openings(images: list[np.ndarray]) -> np.ndarray:
    """How open each RGB frame's mouth is: how far it is from the avatar's own (closed) mouth
    in the avatar frame whose face above the mouth matches best, less how far that face is
    (what the video coding alone changes)."""
    mouth_at, above_at = boxes()
    own = avatar_rgb_frames(DEMO_PACKAGE)
    own_mouth = own[(slice(None), *mouth_at)].astype(np.float32)
    own_above = own[(slice(None), *above_at)].astype(np.float32)
    opening = []
    for image in images:
        above = np.abs(own_above - image[above_at].astype(np.float32)).mean(axis=(1, 2, 3))
        best = int(np.argmin(above))
        opening.append(np.abs(own_mouth[best] - image[mouth_at]).mean() - above[best])
    return np.asarray(opening)


def envelopes(call: Call) -> tuple[np.ndarray, np.ndarray]:
    """(voice loudness, mouth opening) per 40 ms, both on the RTP timeline from its start."""
    video = call.received.video
    slots = max(pts for pts, _ in video) // 3600 + 1
    mouth = np.zeros(slots)
    mouth[[pts // 3600 for pts, _ in video]] = openings([image for _, image in video])
    loud = np.zeros(slots)
    for pts, samples in call.received.audio:
        slot = pts // (RATE // 25)
        if slot < slots:
            loud[slot] += float(np.sum(samples.astype(np.float64) ** 2))
    return np.sqrt(loud), mouth


def recorded(path, timeout: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """(mouth opening per frame, the audio) of a recording, once the server has finished it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with av.open(str(path)) as container:
                images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            with av.open(str(path)) as container:
                audio = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
            return openings(images), audio
        except (OSError, av.FFmpegError, ValueError):  # not there, or not finished yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def run_call(speech_wav, frames: int, during=None, record: bool = False) -> Call:
    """A call that lasts until ``frames`` video frames came (60 s at most)."""
    call = Call(voice(speech_wav))
    await call.start(WEB_URL, record=record)
    try:
        if during is not None:
            await during(call)
        enough = lambda: len(call.received.video) >= frames  # noqa: E731
        await call.wait_for(enough, 60, f"{frames} video frames")
    finally:
        await call.close()
    return call


def first_voice_s(call: Call) -> float:
    """When the beep starts in the received audio, by its RTP timestamps (s)."""
    for pts, samples in call.received.audio:
        loud = np.nonzero(np.abs(samples) > 4000)[0]
        if len(loud):
            return (pts + loud[0]) / RATE
    raise AssertionError("no voice came back")


def test_a_webrtc_call_gets_the_avatar_at_25_fps_in_sync_with_its_voice(
    console_system, network_loop, speech_wav
):
    call = network_loop.run(run_call(speech_wav, 175, record=True), timeout=120)
    assert call.answer["model"] == "demo" and call.answer["type"] == "answer"
    video = call.received.video
    steps = np.diff([pts for pts, _ in video])
    assert len(video) > 100  # 7 s of call
    assert (steps == 3600).mean() > 0.95 and steps.min() >= 3600  # 25 fps on the RTP clock

    loud, mouth = envelopes(call)
    idle = np.median(mouth[:5])  # the avatar's own frames, before the first mouth
    first_mouth = int(np.nonzero(mouth > idle + 2.0)[0][0])
    offset_ms = (first_voice_s(call) - first_mouth * 0.04) * 1000
    assert -45 <= offset_ms <= 45, f"A/V offset {offset_ms:.0f} ms"  # by the RTP timestamps

    words = int(np.ceil(len(voice(speech_wav)) / RATE / 0.04))
    speech = mouth[first_mouth : first_mouth + words]
    silence = mouth[first_mouth + words + 10 :]  # the microphone goes on, silent
    assert len(silence) > 25
    assert speech.std() > 0.5  # the mouth opens and closes while the voice speaks
    assert np.median(speech) > np.median(silence) + 1.0  # and rests, closed, in silence

    # the call, recorded on the server as it was sent: the voice starts with the first mouth
    frames, audio = recorded(console_system.workdir / "recordings" / call.answer["recording"])
    assert len(frames) >= len(video)
    first_frame = int(np.nonzero(frames > np.median(frames[:5]) + 2.0)[0][0])
    first_sound = int(np.nonzero(np.abs(audio) > 0.1)[0][0]) / 24000
    assert abs(first_sound - first_frame * 0.04) <= 0.045


def test_the_data_channel_interrupts_reports_and_switches_models(console_system, network_loop):
    marks: dict[str, float] = {}

    async def during(call: Call) -> None:
        def speaking() -> bool:  # asks the server how many mouth frames it has sent
            if call.channel.readyState == "open":
                call.send({"type": "get_stats"})
            stats = call.last("stats")
            return bool(stats and stats["webrtc"]["speaking_frames"] > 25)

        await call.wait_for(speaking, 60, "a second of mouth frames")
        marks["interrupt"] = time.monotonic()
        call.send({"type": "interrupt"})
        await asyncio.sleep(0.1)  # what the client said meanwhile is dropped, not played
        call.voice.stop_speaking()
        await call.wait_for(lambda: call.last("interrupted"), 30, "interrupted")
        settled = call.last("interrupted")["_at"] + SETTLE_S
        more = lambda: sum(at > settled for at in call.received.video_at) >= 60  # noqa: E731
        await call.wait_for(more, 30, "2.4 s of frames once the interruption settled")
        call.send({"type": "set_model", "model_name": "demo_b"})
        await call.wait_for(lambda: call.last("model_changed"), 30, "model_changed")

    call = network_loop.run(run_call(LONG_SPEECH_WAV, 0, during), timeout=180)
    kinds = [m["type"] for m in call.received.messages]
    assert {"stats", "interrupted", "model_changed"} <= set(kinds), kinds
    stats = next(m for m in call.received.messages if m["type"] == "stats")
    assert stats["webrtc"]["peer_id"] == call.answer["peer_id"]
    assert stats["current_model"] == "demo" and stats["pipeline_latency_ms"] > 0
    changed = next(m for m in call.received.messages if m["type"] == "model_changed")
    assert changed["model_name"] == "demo_b"

    # frames sent before the server took the interruption may still arrive just after it
    settle = call.last("interrupted")["_at"] + SETTLE_S
    loud, mouth = envelopes(call)
    arrivals = list(zip(call.received.video, call.received.video_at, strict=True))
    before = [pts // 3600 for (pts, _), at in arrivals if at < marks["interrupt"]]
    after = [pts // 3600 for (pts, _), at in arrivals if at > settle]
    speaking = mouth[before][mouth[before] > np.median(mouth[:5]) + 2.0]  # the mouth frames
    assert len(speaking) > 10 and len(after) >= 60
    # the mouth closes at once: what comes after is the avatar at rest (the silence that
    # follows is still lip-synced: a closed mouth)
    assert np.median(mouth[after]) < np.median(speaking) - 1.0
    received = zip(call.received.audio, call.received.audio_at, strict=True)
    heard = [s for s, at in received if at > settle]
    # no voice (it peaks at 3000-9000 here); a few hundred is the codec's own tail
    assert heard and max(np.abs(samples).max() for _, samples in heard) < 1000


def test_the_consoles_server_video_mode_plays_the_avatar_the_server_sends(browser, console_system):
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    context.grant_permissions(["microphone"])
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        page.goto(f"{WEB_URL}/index.html")
        page.click("text=Server video")  # the console's own link to the mode
        page.wait_for_function("!document.getElementById('model-select').disabled", timeout=30000)
        page.click("#mic-start")  # the fake microphone: the test speech, looped
        page.wait_for_function(
            "(() => { const s = window.lipstream.state();"
            " return s.call === 'connected' && s.framesShown > 50 && s.stats; })()",
            timeout=60000,
            polling=100,
        )
        state = page.evaluate("window.lipstream.state()")
        assert (state["videoWidth"], state["videoHeight"]) == (512, 512)  # whole frames
        assert state["audioTracks"] == 1  # and the voice, in the same stream
        assert state["stats"]["current_model"] == "demo"
        assert state["stats"]["pipeline_latency_ms"] > 0
        folder = os.environ.get("LIPSTREAM_SCREENSHOTS")
        if folder:
            page.screenshot(path=str(Path(folder) / "console-server-video.jpg"), quality=85)
        page.click("#interrupt")
        page.wait_for_function(
            "window.lipstream.state().messages.includes('interrupted')", timeout=10000
        )
        assert not problems, problems
    finally:
        context.close()
