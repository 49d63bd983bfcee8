"""One frame-generator session, without I/O: audio in, inference jobs out, frames back in order.

The session owns the timeline (see docs/frame-protocol.md): frame ``k`` covers timeline audio
``[40k, 40k + 40)`` ms. Audio is split into utterances, each ended by ``end_of_speech`` or cut by
``interrupt``; an utterance's frames are made from its own audio (silence before its start and
after its end), and the next utterance starts at the next whole frame of the timeline.

A caller drives it like this: ``push_audio`` as chunks arrive; ``next_job`` whenever a request
slot is free, sending the job to the lip-sync service; ``complete`` or ``fail`` with the answer;
``take_frames`` / ``pop_frame`` to hand finished frames to the client, always in timeline order.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.pcm import AudioChunk, float_to_pcm16, validate_sample_rate
from lipstream.audio.resample import StreamingResampler
from lipstream.errors import InvalidInput, Overloaded
from lipstream.frames.timings import Timings, pipeline_latency_ms, processing_estimate_ms
from lipstream.schedule import pingpong_frame_id

FRAME_MS = 1000.0 / tl.FPS


@dataclass(frozen=True)
class SessionModel:
    """What a session needs to know of a model: its name, frames and feature layout."""

    name: str
    frame_count: int
    layout: tl.FeatureLayout = tl.SYNCTALK2D  # which audio each frame waits for
    runtime: str = ""  # how the lip-sync service runs it, e.g. "openvino-int8"

    @property
    def lookahead_ms(self) -> float:
        """Audio a frame needs past its start (the layout's worst case)."""
        return self.layout.lookahead_ms


@dataclass(frozen=True, eq=False)
class InferenceJob:
    """Frames for the lip-sync service to make: consecutive frames of one utterance."""

    job_id: int
    model_name: str
    frame_ids: tuple[int, ...]  # avatar frames to draw on
    utterance: int  # the utterance's number, unique in the process (from 1)
    timeline_first_frame: int  # session frame index of the first frame
    utterance_first_frame: int  # the same frame counted from its utterance's start
    audio: AudioChunk  # 16 kHz audio of the utterance from utterance sample audio_start_sample
    audio_start_sample: int
    audio_ready_at: tuple[float, ...]  # monotonic time the audio completing each frame arrived
    utterance_samples: int | None = None  # the utterance's length (16 kHz), once it has ended
    planned_at: float = 0.0  # monotonic time the job was handed out

    @property
    def frame_count(self) -> int:
        return len(self.frame_ids)


@dataclass(frozen=True)
class MouthFrame:
    """A finished frame: the mouth region of timeline frame ``frame_index``."""

    frame_index: int
    frame_id: int
    jpeg: bytes
    bounds: tuple[float, float, float, float]
    model_name: str
    made_at: float  # wall-clock time (time.time()) the frame was ready
    latency_ms: float  # from the arrival of its audio to being ready


_utterance_numbers = itertools.count(1)


@dataclass
class _Utterance:
    start_frame: int  # session frame index of its first frame
    number: int = field(default_factory=lambda: next(_utterance_numbers))
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    first_sample: int = 0  # utterance index of samples[0]
    received: int = 0  # 16 kHz samples received so far
    input_samples: int = 0  # samples received at the input rate
    ended: bool = False
    total_frames: int = 0  # once ended
    next_frame: int = 0  # next utterance frame to put in a job
    arrivals: deque[tuple[int, float]] = field(default_factory=deque)  # (received, time)
    first_arrival: tuple[int, float] | None = None  # anchors the real-time schedule
    ended_at: float | None = None  # when end_of_speech came

    def frames_ready(self, layout: tl.FeatureLayout) -> int:
        return self.total_frames if self.ended else layout.frames_ready(self.received)


class Session:
    """Audio timeline, job planning and the ordered frame buffer of one client connection.

    ``audio_buffer_ms`` bounds the audio received but not yet made into frames (a chunk that
    would pass it is refused with Overloaded, nothing queued is lost); the frame buffer holds
    at most ``audio_buffer_ms / 40`` frames, and while it is full no new jobs are planned.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        batch_size: int = 5,
        audio_buffer_ms: float = 3000.0,
        max_in_flight: int = 2,
        clock=time.monotonic,
        wall_clock=time.time,
        shared_timings: Timings | None = None,
    ) -> None:
        """``shared_timings``: what every session of the server measured, the estimate of a new
        session's processing time until it has measured enough frames of its own."""
        if batch_size < 1 or max_in_flight < 1:
            raise InvalidInput("batch_size and max_in_flight must be at least 1")
        self.batch_size = batch_size
        self.audio_buffer_ms = float(audio_buffer_ms)
        self.max_frames_buffered = max(1, int(audio_buffer_ms // FRAME_MS))
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._wall_clock = wall_clock
        self._job_ids = itertools.count(1)
        self.model: SessionModel | None = None
        self.frames_generated = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.timings = Timings()
        self._shared_timings = shared_timings
        self._fed_timings = (self.timings, *((shared_timings,) if shared_timings else ()))
        self._set_rate(sample_rate)
        self._utterances: deque[_Utterance] = deque([_Utterance(start_frame=0)])
        self._in_flight: dict[int, InferenceJob] = {}
        self._done: dict[int, list[MouthFrame]] = {}  # finished jobs waiting for older ones
        self._frames: deque[MouthFrame] = deque()

    # ----------------------------------------------------------------------------- settings

    def _set_rate(self, sample_rate: int) -> None:
        self.sample_rate = validate_sample_rate(sample_rate)
        self._resampler = StreamingResampler(self.sample_rate, tl.SAMPLE_RATE)

    def set_sample_rate(self, sample_rate: int) -> None:
        """Change the input rate; only while no audio is queued."""
        if self.audio_queued_ms > 0:
            raise InvalidInput(
                "audio_sample_rate can only change while no audio is queued; "
                "send end_of_speech or interrupt first"
            )
        self._set_rate(sample_rate)

    def set_model(self, model: SessionModel) -> None:
        """Frames planned from now on use ``model``; frames already made keep theirs."""
        if model.frame_count < 1:
            raise InvalidInput(f"model {model.name} has no frames")
        self.model = model

    @property
    def lookahead_ms(self) -> float:
        """Audio a frame needs past its start, resampling included."""
        return self.layout.lookahead_ms + 1000.0 * self._resampler.latency_s

    @property
    def layout(self) -> tl.FeatureLayout:
        """The feature layout of the session's model (SyncTalk_2D's before one is chosen)."""
        return self.model.layout if self.model else tl.SYNCTALK2D

    # ----------------------------------------------------------------------------- audio

    @property
    def _current(self) -> _Utterance:
        return self._utterances[-1]

    @property
    def audio_queued_ms(self) -> float:
        """Audio received but not yet planned into frames, in ms."""
        samples = sum(
            max(u.received - tl.SAMPLES_PER_FRAME * u.next_frame, 0) for u in self._utterances
        )
        return 1000.0 * samples / tl.SAMPLE_RATE

    def push_audio(self, chunk: AudioChunk) -> None:
        """Queue a chunk at the session's rate; Overloaded (nothing queued) past the bound."""
        if chunk.sample_rate != self.sample_rate:
            raise InvalidInput(
                f"audio is {chunk.sample_rate} Hz but this session takes {self.sample_rate} Hz "
                "(change it with configure.audio_sample_rate)"
            )
        if not len(chunk):
            raise InvalidInput("empty audio chunk: send at least one sample")
        if self.audio_queued_ms + 1000.0 * chunk.duration > self.audio_buffer_ms:
            raise Overloaded(
                f"audio buffer full: {self.audio_queued_ms:.0f} ms queued, the limit is "
                f"{self.audio_buffer_ms:.0f} ms (AUDIO_BUFFER_SIZE); this chunk of "
                f"{1000.0 * chunk.duration:.0f} ms was not queued: send audio at real-time pace"
            )
        utt = self._current
        if utt.ended:  # end_of_speech came before: this audio starts the next utterance
            utt = self._start_next_utterance()
        utt.input_samples += len(chunk)
        self._append(utt, self._resampler.process(chunk))

    def _append(self, utt: _Utterance, samples16k: np.ndarray) -> None:
        if len(samples16k):
            utt.samples = np.concatenate([utt.samples, samples16k.astype(np.float32)])
            utt.received += len(samples16k)
            utt.arrivals.append((utt.received, self._clock()))
            if utt.first_arrival is None:
                utt.first_arrival = utt.arrivals[-1]

    def _utterance_frames(self, utt: _Utterance) -> int:
        # ceil(ceil(N * 16000 / rate) / 640) == ceil(N * 25 / rate): whole frames of its input
        return -(-utt.input_samples * tl.FPS // self.sample_rate)

    def _start_next_utterance(self) -> _Utterance:
        last = self._current
        nxt = _Utterance(start_frame=last.start_frame + self._utterance_frames(last))
        self._utterances.append(nxt)
        return nxt

    def end_of_speech(self) -> int:
        """Finish the current utterance with silence; returns how many of its frames are left."""
        utt = self._current
        if utt.ended:
            return 0
        self._append(utt, self._resampler.flush())
        utt.ended = True
        utt.ended_at = self._clock()
        utt.total_frames = self._utterance_frames(utt)
        # the end is known now: every frame left is ready at once (see _arrival)
        return utt.total_frames - utt.next_frame

    def interrupt(self) -> tuple[int, float]:
        """Drop queued audio, jobs in flight and frames; returns (frames dropped, audio ms)."""
        dropped_audio = self.audio_queued_ms
        dropped = len(self._frames) + sum(j.frame_count for j in self._in_flight.values())
        dropped += sum(len(f) for f in self._done.values())
        next_frame = self.next_frame_index
        self._frames.clear()
        self._in_flight.clear()
        self._done.clear()
        self._resampler.reset()
        self._utterances = deque([_Utterance(start_frame=next_frame)])
        self.frames_dropped += dropped
        return dropped, dropped_audio

    @property
    def next_frame_index(self) -> int:
        """Timeline frame where the next utterance would start (after end_of_speech/interrupt)."""
        last = self._current
        return last.start_frame + self._utterance_frames(last)

    # ----------------------------------------------------------------------------- jobs

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def is_in_flight(self, job: InferenceJob) -> bool:
        """Whether ``job`` still awaits its answer (False once interrupted, failed or done)."""
        return job.job_id in self._in_flight

    def _buffered_or_coming(self) -> int:
        waiting = sum(len(f) for f in self._done.values())
        coming = sum(j.frame_count for j in self._in_flight.values())
        return len(self._frames) + waiting + coming

    def next_job(self) -> InferenceJob | None:
        """The next frames to make, or None (nothing ready, no model, or no room)."""
        if self.model is None or len(self._in_flight) >= self.max_in_flight:
            return None
        while (
            len(self._utterances) > 1
            and self._utterances[0].ended
            and self._utterances[0].next_frame >= self._utterances[0].total_frames
        ):
            self._utterances.popleft()
        utt = self._utterances[0]
        room = self.max_frames_buffered - self._buffered_or_coming()
        layout = self.layout
        count = min(utt.frames_ready(layout) - utt.next_frame, self.batch_size, room)
        if count <= 0:
            return None
        first = utt.next_frame
        last = first + count - 1
        start = max(layout.first_sample_needed(first), 0)
        end = min(layout.samples_needed(last), utt.received)
        audio = utt.samples[start - utt.first_sample : end - utt.first_sample]
        ready_at = tuple(self._arrival(utt, k) for k in range(first, last + 1))
        timeline_first = utt.start_frame + first
        model = self.model
        job = InferenceJob(
            job_id=next(self._job_ids),
            model_name=model.name,
            utterance=utt.number,
            frame_ids=tuple(
                pingpong_frame_id(timeline_first + i, model.frame_count) for i in range(count)
            ),
            timeline_first_frame=timeline_first,
            utterance_first_frame=first,
            audio=AudioChunk(float_to_pcm16(audio), tl.SAMPLE_RATE),
            audio_start_sample=start,
            audio_ready_at=ready_at,
            utterance_samples=utt.received if utt.ended else None,
            planned_at=self._clock(),
        )
        utt.next_frame = last + 1
        self._forget_audio(utt)
        self._in_flight[job.job_id] = job
        return job

    def _arrival(self, utt: _Utterance, frame: int) -> float:
        """When the audio completing ``frame`` arrived, or would have at real-time pace if later.

        Audio sent ahead of real time (a clip) and the silence ``end_of_speech`` adds complete
        many frames at once, but those frames are due 40 ms apart: counting from when their
        audio was due keeps that burst out of the latency a listener sees, and out of the
        pipeline latency estimate.
        """
        needed = self.layout.samples_needed(frame)
        arrived = next((at for received, at in utt.arrivals if received >= needed), None)
        if arrived is None:  # completed by end_of_speech's silence
            arrived = utt.ended_at if utt.ended_at is not None else self._clock()
        if utt.first_arrival is None:
            return arrived
        received, at = utt.first_arrival
        return max(arrived, at + (needed - received) / tl.SAMPLE_RATE)

    def _forget_audio(self, utt: _Utterance) -> None:
        keep_from = max(self.layout.first_sample_needed(utt.next_frame), 0)
        if keep_from > utt.first_sample:
            utt.samples = utt.samples[keep_from - utt.first_sample :]
            utt.first_sample = keep_from
        needed = self.layout.samples_needed(utt.next_frame)
        while len(utt.arrivals) > 1 and utt.arrivals[0][0] < needed:
            utt.arrivals.popleft()

    def complete(
        self,
        job: InferenceJob,
        mouths: Sequence[tuple[bytes, Sequence[float]]],
    ) -> int:
        """Hand in a job's mouths (JPEG, bounds) in frame order; returns frames now buffered.

        Answers for jobs dropped by an interrupt are ignored.
        """
        if self._in_flight.pop(job.job_id, None) is None:
            return 0
        if len(mouths) != job.frame_count:
            self._done[job.job_id] = []
            self.frames_dropped += job.frame_count
        else:
            now, wall = self._clock(), self._wall_clock()
            for t in self._fed_timings:
                t.round_trip.add(1000.0 * (now - job.planned_at))
            frames = []
            for i, (jpeg, bounds) in enumerate(mouths):
                latency = max(0.0, 1000.0 * (now - job.audio_ready_at[i]))
                for t in self._fed_timings:
                    t.latency.add(latency)
                frames.append(
                    MouthFrame(
                        frame_index=job.timeline_first_frame + i,
                        frame_id=job.frame_ids[i],
                        jpeg=jpeg,
                        bounds=(
                            float(bounds[0]),
                            float(bounds[1]),
                            float(bounds[2]),
                            float(bounds[3]),
                        ),
                        model_name=job.model_name,
                        made_at=wall,
                        latency_ms=latency,
                    )
                )
            self._done[job.job_id] = frames
            self.frames_generated += len(frames)
        return self._release()

    def fail(self, job: InferenceJob) -> None:
        """The lip-sync service could not make a job's frames: they are dropped."""
        if self._in_flight.pop(job.job_id, None) is not None:
            self._done[job.job_id] = []
            self.frames_dropped += job.frame_count
            self._release()

    def _release(self) -> int:
        # finished jobs go to the buffer in order: a job waits for every older one in flight
        released = 0
        oldest_in_flight = min(self._in_flight, default=None)
        for job_id in sorted(self._done):
            if oldest_in_flight is not None and job_id > oldest_in_flight:
                break
            frames = self._done.pop(job_id)
            self._frames.extend(frames)
            released += len(frames)
        return released

    # ----------------------------------------------------------------------------- frames

    @property
    def frames_buffered(self) -> int:
        return len(self._frames)

    def pop_frame(self) -> MouthFrame | None:
        """The oldest finished frame not yet taken, or None."""
        if not self._frames:
            return None
        self.frames_sent += 1
        return self._frames.popleft()

    def take_frames(self) -> list[MouthFrame]:
        """Every finished frame not yet taken, oldest first."""
        frames = list(self._frames)
        self._frames.clear()
        self.frames_sent += len(frames)
        return frames

    def processing_estimate_ms(self) -> float:
        """What to expect between a frame's audio and the frame (timings.processing_estimate_ms)."""
        return processing_estimate_ms(self.timings, self._shared_timings)

    def pipeline_latency_ms(self) -> float:
        """How long the client should delay its audio (``timings.pipeline_latency_ms``)."""
        return pipeline_latency_ms(self.lookahead_ms, self.processing_estimate_ms())

    @property
    def latency_measured(self) -> bool:
        """Whether the processing estimate comes from measured frames (not the first guess)."""
        shared = self._shared_timings
        return self.timings.estimate_ms() is not None or (
            shared is not None and shared.estimate_ms() is not None
        )
