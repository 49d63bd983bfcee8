"""Dynamic batching: requests from many callers share one forward pass of the generator.

``BatchQueue`` is the plan, with no threads: a FIFO of jobs bounded in frames (a job that would
pass ``max_queued_frames`` is refused with Overloaded, nothing queued is dropped), from which a
batch is the oldest job plus the next jobs of the same model that fit in ``max_batch_frames``.
``Batcher`` runs the plan on one worker thread: it takes the oldest job, waits up to
``batch_window_ms`` for more of the same model, fails the jobs whose deadline has passed without
computing them, makes the remaining jobs' audio features, runs one ``generate`` over all their
frames, and hands the mouths to a small pool of encoder threads, which JPEG-encode them and
resolve each caller's asyncio future on its own loop while the worker runs the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import simplejpeg

from lipstream.errors import LipstreamError, Overloaded, ServiceUnavailable
from lipstream.model.runtime import MouthGenerator

JPEG_QUALITY = 90
ENCODER_THREADS = 2  # JPEG encoders beside the worker; a 320x320 mouth takes about 0.25 ms

_log = logging.getLogger(__name__)


class DeadlineExceeded(LipstreamError, TimeoutError):
    """A request's deadline passed before its frames could be made; they were not computed."""


# A job's audio features, or a function that makes them (run on the worker thread, off the
# event loop); whatever it raises fails that job only.
Features = np.ndarray | Callable[[], np.ndarray]


@dataclass(frozen=True)
class FrameResult:
    """The mouths made for one job, with how they were made."""

    jpegs: list[bytes]  # one JPEG per frame id, in order
    batch_frames: int  # frames in the forward pass this job rode in
    queue_ms: float  # from submission to the start of its batch
    compute_ms: float  # from the start of its batch to its mouths being encoded


@dataclass(eq=False)
class Job:
    """One caller's frames: what to draw them on, their audio, and where the answer goes."""

    generator: MouthGenerator  # jobs batch together when they share this object
    frame_ids: tuple[int, ...]
    features: Features
    deadline: float | None = None  # on the batcher's clock (time.monotonic by default)
    submitted: float = 0.0
    future: asyncio.Future[FrameResult] | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @property
    def frames(self) -> int:
        return len(self.frame_ids)

    @property
    def abandoned(self) -> bool:
        """The caller cancelled its future: the job is skipped if it has not run yet."""
        # read from the worker thread: a plain attribute read of the future's state
        return self.future is not None and self.future.cancelled()


class BatchQueue:
    """The batching plan: a FIFO of jobs, bounded in queued frames. Not thread-safe."""

    def __init__(self, max_batch_frames: int, max_queued_frames: int) -> None:
        if max_batch_frames < 1 or max_queued_frames < 1:
            raise ValueError("max_batch_frames and max_queued_frames must be at least 1")
        self.max_batch_frames = max_batch_frames
        self.max_queued_frames = max_queued_frames
        self._jobs: deque[Job] = deque()
        self.queued_frames = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def push(self, job: Job) -> None:
        """Queue ``job``, or refuse it with Overloaded when its frames would not fit."""
        if self.queued_frames + job.frames > self.max_queued_frames:
            raise Overloaded(
                f"the lip-sync service is busy: {self.queued_frames} frames are queued and "
                f"{job.frames} more would pass MAX_QUEUED_FRAMES={self.max_queued_frames}; "
                "retry shortly or send fewer frames per request"
            )
        self._jobs.append(job)
        self.queued_frames += job.frames

    def take_oldest(self) -> Job | None:
        """Remove and return the oldest job (None when empty)."""
        if not self._jobs:
            return None
        job = self._jobs.popleft()
        self.queued_frames -= job.frames
        return job

    def take_same(self, generator: MouthGenerator, room: int) -> tuple[list[Job], bool]:
        """Remove the oldest jobs of ``generator`` that fit in ``room`` frames, in order.

        Returns them and whether a job of that generator was left behind for lack of room
        (then waiting for more is pointless: the batch is as full as it can get in order).
        """
        taken: list[Job] = []
        kept: deque[Job] = deque()
        blocked = False
        for job in self._jobs:
            if blocked or job.generator is not generator:
                kept.append(job)
            elif job.frames <= room:
                taken.append(job)
                room -= job.frames
                self.queued_frames -= job.frames
            else:
                blocked = True
                kept.append(job)
        self._jobs = kept
        return taken, blocked

    def remove(self, job: Job) -> bool:
        """Remove ``job`` if it is still queued; whether it was."""
        try:
            self._jobs.remove(job)
        except ValueError:
            return False
        self.queued_frames -= job.frames
        return True

    def drain(self) -> list[Job]:
        """Remove and return every queued job."""
        jobs = list(self._jobs)
        self._jobs.clear()
        self.queued_frames = 0
        return jobs


class Batcher:
    """Runs jobs from any number of asyncio callers on one worker thread, in shared batches.

    ``clock`` is the time base of job deadlines (``time.monotonic``). ``close`` lets the batch
    in progress finish, fails the queued jobs with ServiceUnavailable and joins the worker.
    """

    def __init__(
        self,
        *,
        batch_window_ms: float = 2.0,
        max_batch_frames: int = 32,
        max_queued_frames: int = 400,
        jpeg_quality: int = JPEG_QUALITY,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_batch(frames, seconds)`` hears of each forward pass (features included)."""
        self._on_batch = on_batch
        self.batch_window_s = max(0.0, batch_window_ms) / 1000.0
        self.jpeg_quality = jpeg_quality
        self._clock = clock
        self._log = logger or _log
        self._queue = BatchQueue(max_batch_frames, max_queued_frames)
        self._cond = threading.Condition()
        self._closed = False
        # JPEG encoding (libjpeg-turbo, without the GIL) overlaps the next batch's inference
        self._encoders = ThreadPoolExecutor(ENCODER_THREADS, thread_name_prefix="lipstream-jpeg")
        self._thread = threading.Thread(target=self._work, name="lipstream-batcher", daemon=True)
        self._thread.start()

    @property
    def max_batch_frames(self) -> int:
        return self._queue.max_batch_frames

    @property
    def queued_frames(self) -> int:
        """Frames waiting for a batch now."""
        with self._cond:
            return self._queue.queued_frames

    def submit(self, job: Job) -> asyncio.Future[FrameResult]:
        """Queue ``job`` from a coroutine; its future resolves on the caller's loop.

        Raises Overloaded when the queue is full and ServiceUnavailable after ``close``.
        Cancelling the future abandons the job: it leaves the queue, or is skipped if its
        batch is being formed.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[FrameResult] = loop.create_future()
        job.loop, job.future = loop, future
        job.submitted = self._clock()
        with self._cond:
            if self._closed:
                raise ServiceUnavailable("the lip-sync service is shutting down")
            self._queue.push(job)
            self._cond.notify()
        future.add_done_callback(lambda done: self._forget(job) if done.cancelled() else None)
        return future

    def _forget(self, job: Job) -> None:
        """Take a cancelled job out of the queue, so it no longer holds queue room."""
        with self._cond:
            self._queue.remove(job)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking jobs, fail the queued ones, finish the running batch, join the worker."""
        with self._cond:
            self._closed = True
            pending = self._queue.drain()
            self._cond.notify_all()
        for job in pending:
            _fail(job, ServiceUnavailable("the lip-sync service is shutting down"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            self._encoders.shutdown(wait=True)  # the last batch's frames are delivered

    # ---------------------------------------------------------------------------------------
    # the worker thread

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except Exception as exc:  # the worker must outlive any one batch
                self._log.exception("a batch of %d jobs failed", len(batch))
                for job in batch:
                    _fail(job, exc)

    def _next_batch(self) -> list[Job] | None:
        """Wait for the oldest job, then up to the batch window for more of its model."""
        with self._cond:
            while not len(self._queue) and not self._closed:
                self._cond.wait()
            first = self._queue.take_oldest()
            if first is None:  # closed and empty
                return None
            batch, frames = [first], first.frames
            window_end = self._clock() + self.batch_window_s
            while True:
                more, blocked = self._queue.take_same(
                    first.generator, self.max_batch_frames - frames
                )
                batch += more
                frames += sum(job.frames for job in more)
                remaining = window_end - self._clock()
                if blocked or frames >= self.max_batch_frames or self._closed or remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    def _run_batch(self, batch: list[Job]) -> None:
        start = self._clock()
        live: list[tuple[Job, np.ndarray]] = []
        for job in batch:
            if job.abandoned:  # the caller stopped waiting
                continue
            if job.deadline is not None and start >= job.deadline:
                late_ms = 1000.0 * (start - job.submitted)
                _fail(
                    job,
                    DeadlineExceeded(
                        f"the request's deadline passed after {late_ms:.0f} ms in the queue, "
                        "before its frames could be made"
                    ),
                )
                continue
            try:
                features = job.features() if callable(job.features) else job.features
            except LipstreamError as exc:  # a bad request fails alone
                _fail(job, exc)
                continue
            except Exception as exc:  # so does one whose features broke: not the batch
                self._log.exception("the features of a request failed")
                _fail(job, exc)
                continue
            live.append((job, features))
        if not live:
            return
        generator = live[0][0].generator
        frame_ids = [i for job, _ in live for i in job.frame_ids]
        audio = np.concatenate([features for _, features in live]).astype(np.float32, copy=False)
        mouths = self._generate(generator, frame_ids, audio)
        if self._on_batch is not None:
            self._on_batch(len(frame_ids), self._clock() - start)
        offset = 0
        for job, _ in live:
            own = mouths[offset : offset + job.frames]
            offset += job.frames
            self._encoders.submit(self._encode, job, own, len(frame_ids), start)
        self._log.debug(
            "batch of %d frames from %d requests in %.1f ms",
            len(frame_ids),
            len(live),
            1000.0 * (self._clock() - start),
        )

    def _encode(self, job: Job, mouths: np.ndarray, batch_frames: int, start: float) -> None:
        """On an encoder thread: JPEG-encode one job's mouths and resolve its future."""
        try:
            jpegs = [
                simplejpeg.encode_jpeg(
                    np.ascontiguousarray(mouth), quality=self.jpeg_quality, colorspace="BGR"
                )
                for mouth in mouths
            ]
        except Exception as exc:  # an encoder failure fails that job only
            _fail(job, exc)
            return
        _resolve(
            job,
            FrameResult(
                jpegs=jpegs,
                batch_frames=batch_frames,
                queue_ms=1000.0 * (start - job.submitted),
                compute_ms=1000.0 * (self._clock() - start),
            ),
        )

    def _generate(
        self, generator: MouthGenerator, frame_ids: list[int], audio: np.ndarray
    ) -> np.ndarray:
        """The batch's mouths, in passes of at most max_batch_frames (one request may be more)."""
        step = self.max_batch_frames
        if len(frame_ids) <= step:
            return generator.generate(frame_ids, audio)
        return np.concatenate(
            [
                generator.generate(frame_ids[i : i + step], audio[i : i + step])
                for i in range(0, len(frame_ids), step)
            ]
        )


def _resolve(job: Job, result: FrameResult) -> None:
    _settle(job, lambda future: future.set_result(result))


def _fail(job: Job, exc: BaseException) -> None:
    _settle(job, lambda future: future.set_exception(exc))


def _settle(job: Job, action: Callable[[asyncio.Future[FrameResult]], None]) -> None:
    future, loop = job.future, job.loop
    if future is None or loop is None:
        return

    def apply() -> None:
        if not future.done():  # the caller may have been cancelled meanwhile
            action(future)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(apply)
