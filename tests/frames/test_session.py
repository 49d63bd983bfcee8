"""The frame generator's session core, driven without sockets."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio import timeline as tl
from lipstream.audio.features import offline_features, segment_features
from lipstream.audio.pcm import AudioChunk, float_to_pcm16
from lipstream.audio.resample import StreamingResampler, resample
from lipstream.errors import InvalidInput, Overloaded
from lipstream.frames.session import Session, SessionModel
from lipstream.frames.timings import Timings
from lipstream.schedule import pingpong_frame_id

RATE = 24000
CHUNK = RATE // 25  # 40 ms


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = envelope * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t)))
    return float_to_pcm16(x.astype(np.float32))


def fake_encoder(windows: np.ndarray) -> np.ndarray:
    # deterministic and sensitive to every mel value of the window
    flat = windows.reshape(len(windows), -1)
    weights = np.random.default_rng(1).standard_normal((flat.shape[1], 512)).astype(np.float32)
    return flat @ weights / 100.0


def mouths_for(job):
    return [
        (f"jpeg{job.timeline_first_frame + i}".encode(), (1, 2, 3, 4))
        for i in range(job.frame_count)
    ]


def run_all_jobs(session: Session) -> list:
    jobs = []
    while (job := session.next_job()) is not None:
        jobs.append(job)
        session.complete(job, mouths_for(job))
    return jobs


def new_session(**kwargs) -> Session:
    session = Session(RATE, **kwargs)
    session.set_model(SessionModel("demo", frame_count=10))
    return session


def test_one_frame_per_40ms_of_audio_in_timeline_order():
    session = new_session()
    audio = speechlike(2.03)
    for start in range(0, len(audio), CHUNK):
        session.push_audio(AudioChunk(audio[start : start + CHUNK], RATE))
        run_all_jobs(session)
    session.end_of_speech()
    run_all_jobs(session)
    frames = session.take_frames()
    assert [f.frame_index for f in frames] == list(range(51))  # ceil(2030 / 40)
    assert [f.frame_id for f in frames] == [pingpong_frame_id(k, 10) for k in range(51)]
    assert session.audio_queued_ms == 0
    assert session.next_frame_index == 51


def test_a_frame_waits_for_its_lookahead():
    session = new_session(batch_size=50)
    audio = speechlike(1.0)
    sent = 0
    while sent < len(audio):
        session.push_audio(AudioChunk(audio[sent : sent + CHUNK], RATE))
        sent += CHUNK
        received16k = session._utterances[-1].received
        for job in run_all_jobs(session):
            last = job.utterance_first_frame + job.frame_count - 1
            assert tl.SYNCTALK2D.samples_needed(last) <= received16k
    received = session._utterances[-1].received
    assert len(session.take_frames()) == tl.SYNCTALK2D.frames_ready(received)


def test_jobs_carry_the_audio_that_reproduces_offline_features():
    session = new_session()
    audio = speechlike(3.0, seed=4)
    jobs = []
    for start in range(0, len(audio), CHUNK):
        session.push_audio(AudioChunk(audio[start : start + CHUNK], RATE))
        while (job := session.next_job()) is not None:
            jobs.append(job)
            session.complete(job, mouths_for(job))
    session.end_of_speech()
    while (job := session.next_job()) is not None:
        jobs.append(job)
        session.complete(job, mouths_for(job))
    # the service's view: the 16 kHz audio quantised to PCM16 as it travels
    reference = offline_features(
        float_to_pcm16(resample(AudioChunk(audio, RATE), RATE)), fake_encoder
    )
    made = np.concatenate(
        [
            segment_features(
                j.audio, j.audio_start_sample, j.utterance_first_frame, j.frame_count, fake_encoder
            )
            for j in jobs
        ]
    )
    assert made.shape == reference.shape
    np.testing.assert_allclose(made, reference, atol=1e-5)


def test_audio_past_the_buffer_is_refused_and_nothing_queued_is_lost():
    session = Session(RATE, audio_buffer_ms=1000)  # no model yet: nothing is planned
    audio = speechlike(1.2)
    accepted = 0
    with pytest.raises(Overloaded, match="audio buffer full"):
        for start in range(0, len(audio), CHUNK):
            session.push_audio(AudioChunk(audio[start : start + CHUNK], RATE))
            accepted += 1
    assert accepted == 25
    # what was accepted is queued, less the part the resampler still holds back
    held_ms = 1000 * StreamingResampler(RATE).latency_s
    assert session.audio_queued_ms == pytest.approx(1000 - held_ms, abs=1)


def test_interrupt_drops_everything_and_the_next_audio_starts_a_new_frame():
    session = new_session(batch_size=3)
    audio = speechlike(1.5)
    for start in range(0, len(audio), CHUNK):
        session.push_audio(AudioChunk(audio[start : start + CHUNK], RATE))
    in_flight = session.next_job()
    done = session.next_job()
    session.complete(done, mouths_for(done))
    assert session.frames_buffered == 0  # waits for the older job in flight
    dropped, dropped_ms = session.interrupt()
    assert dropped == 6 and dropped_ms > 1000
    assert session.complete(in_flight, mouths_for(in_flight)) == 0  # a late answer is ignored
    assert session.pop_frame() is None
    assert session.next_frame_index == 38  # ceil(1500 / 40)
    session.push_audio(AudioChunk(speechlike(0.2), RATE))
    session.end_of_speech()
    run_all_jobs(session)
    assert [f.frame_index for f in session.take_frames()] == [38, 39, 40, 41, 42]


def test_frames_are_released_in_order_when_answers_come_out_of_order():
    session = new_session(batch_size=2)
    audio = speechlike(1.0)
    session.push_audio(AudioChunk(audio, RATE))
    first, second = session.next_job(), session.next_job()
    assert session.next_job() is None  # two requests in flight at most
    assert session.complete(second, mouths_for(second)) == 0
    assert session.complete(first, mouths_for(first)) == 4
    assert [f.frame_index for f in session.take_frames()] == [0, 1, 2, 3]


def test_a_full_frame_buffer_pauses_planning():
    session = new_session(batch_size=5, audio_buffer_ms=400)  # 10 frames
    session.push_audio(AudioChunk(speechlike(0.4), RATE))
    session.end_of_speech()
    run_all_jobs(session)
    assert session.frames_buffered == 10
    session.push_audio(AudioChunk(speechlike(0.1), RATE))
    session.end_of_speech()
    assert session.next_job() is None
    session.pop_frame()
    job = session.next_job()
    assert job is not None and job.frame_count == 1


def test_failed_jobs_count_as_dropped_and_later_frames_still_flow():
    session = new_session(batch_size=2)
    session.push_audio(AudioChunk(speechlike(0.2), RATE))
    session.end_of_speech()
    first, second = session.next_job(), session.next_job()
    session.fail(first)
    session.complete(second, mouths_for(second))
    assert [f.frame_index for f in session.take_frames()] == [2, 3]
    assert session.frames_dropped == 2


def test_sample_rate_changes_only_while_idle():
    session = new_session()
    session.set_sample_rate(16000)
    session.push_audio(AudioChunk(np.zeros(640, np.int16), 16000))
    with pytest.raises(InvalidInput, match="only change while no audio is queued"):
        session.set_sample_rate(48000)
    with pytest.raises(InvalidInput, match="16000 Hz"):
        session.push_audio(AudioChunk(np.zeros(960, np.int16), 24000))


def test_the_processing_estimate_covers_slow_frames_and_starts_from_the_servers_recent_ones():
    clock = [0.0]
    server_timings = Timings()

    def speak(session: Session, seconds: float, processing_s: list[float]) -> None:
        """Stream speech in real time; answer each job after the next of ``processing_s``."""
        answered = 0

        def answer_jobs() -> None:
            nonlocal answered
            for job in iter(session.next_job, None):
                clock[0] += processing_s[answered % len(processing_s)]
                session.complete(job, mouths_for(job))
                session.take_frames()
                answered += 1

        pcm = speechlike(seconds)
        start = clock[0]
        for i, at in enumerate(range(0, len(pcm), CHUNK)):
            clock[0] = max(clock[0], start + 0.04 * (i + 1))  # chunks come at real-time pace
            session.push_audio(AudioChunk(pcm[at : at + CHUNK], RATE))
            answer_jobs()
        session.end_of_speech()
        answer_jobs()

    first = new_session(batch_size=1, clock=lambda: clock[0], shared_timings=server_timings)
    assert first.processing_estimate_ms() == 150.0  # nothing measured yet: the guess
    # mostly 50 ms, one frame in twenty at 300 ms: the estimate covers the slow ones too
    speak(first, 4.0, [0.05] * 19 + [0.3])
    assert first.processing_estimate_ms() >= 250

    second = new_session(batch_size=1, clock=lambda: clock[0], shared_timings=server_timings)
    # a new session starts from what the server's frames took, not from the guess
    assert second.processing_estimate_ms() >= 250
    speak(second, 4.0, [0.02])
    assert second.processing_estimate_ms() < 150  # ... then its own frames take over


def test_audio_sent_ahead_of_real_time_is_not_counted_as_latency():
    clock = [0.0]
    session = new_session(batch_size=5, clock=lambda: clock[0])
    pcm = speechlike(3.0)
    for at in range(0, len(pcm), CHUNK):  # a clip: all of it at once
        session.push_audio(AudioChunk(pcm[at : at + CHUNK], RATE))
    session.end_of_speech()
    frames = []
    for job in iter(session.next_job, None):
        clock[0] += 0.1  # 20 ms a frame: faster than the clip's frames fall due
        session.complete(job, mouths_for(job))
        frames += session.take_frames()

    assert len(frames) == 75
    # each frame was ready before its audio was due at real-time pace: no latency to cover,
    assert session.timings.latency.percentile(100) == 0.0
    # ... but a stream at real-time pace would still wait for each job: that is the estimate
    assert session.processing_estimate_ms() == pytest.approx(100.0)
