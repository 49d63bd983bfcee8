"""Dynamic batching with a deterministic fake runtime: no gRPC, no sockets, no timing."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import simplejpeg

from lipstream.errors import InvalidInput, Overloaded, ServiceUnavailable
from lipstream.service.batcher import Batcher, BatchQueue, DeadlineExceeded, Job


async def answer(batches: Batcher, request: Job):
    """Submit ``request`` and wait for its result, on the running loop."""
    return await batches.submit(request)


def job(runtime, ids, level: float = 0.0, **kwargs) -> Job:
    """A job whose every feature value is ``level`` (the fake shows it in channel 1)."""
    features = np.full((len(ids), 32, 16, 16), level, np.float32)
    return Job(generator=runtime, frame_ids=tuple(ids), features=features, **kwargs)


async def wait_until_entered(runtime) -> None:
    assert await asyncio.to_thread(runtime.entered.wait, 30)


def pixel(jpeg: bytes) -> tuple[int, int]:
    """(frame id, audio level) the fake runtime painted, read back from the JPEG."""
    image = simplejpeg.decode_jpeg(jpeg, colorspace="BGR").astype(np.float64)
    assert image.shape == (320, 320, 3)
    return round(image[:160].mean() / 4), round(image[160:].mean())


@pytest.fixture
def batcher():
    made: list[Batcher] = []

    def make(**kwargs) -> Batcher:
        kwargs.setdefault("batch_window_ms", 0.0)
        made.append(Batcher(**kwargs))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_jobs_of_one_model_ride_together_in_order(batcher, new_runtime):
    a, b = new_runtime(), new_runtime()
    batches = batcher(max_batch_frames=8)

    async def main():
        a.hold()
        first = batches.submit(job(a, [0]))
        await wait_until_entered(a)  # the worker is busy: the next jobs queue up
        second = batches.submit(job(a, [1, 2], level=0.5))
        other = batches.submit(job(b, [3]))
        third = batches.submit(job(a, [4, 5, 6], level=0.7))
        too_big = batches.submit(job(a, [7, 8, 9, 10]))  # 2 + 3 + 4 > 8 frames
        a.release()
        return await asyncio.gather(first, second, other, third, too_big)

    first, second, other, third, too_big = asyncio.run(main())
    # the oldest job and the next ones of its model that fit; the other model waits its turn
    assert a.calls == [[0], [1, 2, 4, 5, 6], [7, 8, 9, 10]]
    assert b.calls == [[3]]
    assert [r.batch_frames for r in (first, second, other, third, too_big)] == [1, 5, 1, 5, 4]
    # each caller gets its own frames back, in its order, made from its own audio
    assert [pixel(j) for j in second.jpegs] == [(1, 50), (2, 50)]
    assert [pixel(j) for j in third.jpegs] == [(4, 70), (5, 70), (6, 70)]
    assert all(r.queue_ms >= 0 and r.compute_ms >= 0 for r in (first, second, third))


def test_a_full_batch_runs_without_waiting_out_the_window(batcher, new_runtime):
    a = new_runtime()
    # a window far longer than the test may take: only a full batch can end it
    batches = batcher(batch_window_ms=60_000.0, max_batch_frames=4)

    async def main():
        return await asyncio.gather(batches.submit(job(a, [0, 1])), batches.submit(job(a, [2, 3])))

    results = asyncio.run(main())
    assert a.calls == [[0, 1, 2, 3]]
    assert [r.batch_frames for r in results] == [4, 4]


def test_a_request_larger_than_a_batch_runs_in_passes(batcher, new_runtime):
    a = new_runtime()
    batches = batcher(max_batch_frames=3)
    result = asyncio.run(answer(batches, job(a, range(7))))
    assert a.calls == [[0, 1, 2], [3, 4, 5], [6]]
    assert [pixel(j)[0] for j in result.jpegs] == list(range(7))


def test_a_full_queue_refuses_new_jobs_and_keeps_the_queued_ones(batcher, new_runtime):
    a = new_runtime()
    batches = batcher(max_queued_frames=4)

    async def main():
        a.hold()
        running = batches.submit(job(a, [0]))
        await wait_until_entered(a)
        queued = batches.submit(job(a, [1, 2, 3, 4]))
        with pytest.raises(Overloaded, match="MAX_QUEUED_FRAMES=4"):
            batches.submit(job(a, [5]))
        assert batches.queued_frames == 4
        a.release()
        return await asyncio.gather(running, queued)

    running, queued = asyncio.run(main())
    assert len(queued.jpegs) == 4
    assert 5 not in a.frame_ids_seen


def test_jobs_past_their_deadline_fail_without_being_computed(batcher, new_runtime):
    a = new_runtime()
    batches = batcher()

    async def main():
        late = batches.submit(job(a, [7], deadline=time.monotonic() - 1.0))
        on_time = batches.submit(job(a, [8], deadline=time.monotonic() + 600.0))
        with pytest.raises(DeadlineExceeded, match="deadline"):
            await late
        return await on_time

    assert len(asyncio.run(main()).jpegs) == 1
    assert a.frame_ids_seen == {8}


def test_a_job_whose_audio_is_bad_fails_alone(batcher, new_runtime):
    a = new_runtime()
    batches = batcher(max_batch_frames=8)

    def bad_audio() -> np.ndarray:
        raise InvalidInput("audio_override: audio is not valid base64")

    async def main():
        a.hold()
        first = batches.submit(job(a, [0]))
        await wait_until_entered(a)
        bad = batches.submit(Job(generator=a, frame_ids=(1,), features=bad_audio))
        good = batches.submit(
            Job(generator=a, frame_ids=(2,), features=lambda: np.ones((1, 32, 16, 16), "f4"))
        )
        a.release()
        await first
        with pytest.raises(InvalidInput, match="base64"):
            await bad
        return await good

    good = asyncio.run(main())
    assert [pixel(j) for j in good.jpegs] == [(2, 100)]
    assert a.calls == [[0], [2]]


def test_a_failing_generator_fails_its_batch_and_the_worker_goes_on(batcher, new_runtime):
    class Broken:
        def generate(self, frame_ids, audio_windows):
            raise RuntimeError("device lost")

    a = new_runtime()
    batches = batcher()

    async def main():
        with pytest.raises(RuntimeError, match="device lost"):
            await batches.submit(job(Broken(), [0]))
        return await batches.submit(job(a, [1]))

    assert len(asyncio.run(main()).jpegs) == 1


def test_close_fails_queued_jobs_and_finishes_the_running_batch(batcher, new_runtime):
    a = new_runtime()
    batches = batcher()

    async def main():
        a.hold()
        running = batches.submit(job(a, [0]))
        await wait_until_entered(a)
        queued = batches.submit(job(a, [1]))
        closing = asyncio.create_task(asyncio.to_thread(batches.close))
        with pytest.raises(ServiceUnavailable, match="shutting down"):
            await queued
        a.release()
        await closing
        with pytest.raises(ServiceUnavailable):
            batches.submit(job(a, [2]))
        return await running

    assert len(asyncio.run(main()).jpegs) == 1
    assert a.calls == [[0]]


def test_a_cancelled_caller_is_skipped(batcher, new_runtime):
    a = new_runtime()
    batches = batcher()

    async def main():
        a.hold()
        running = batches.submit(job(a, [0]))
        await wait_until_entered(a)
        gone = batches.submit(job(a, [1]))
        gone.cancel()
        after = batches.submit(job(a, [2]))
        a.release()
        await running
        return await after

    asyncio.run(main())
    assert a.frame_ids_seen == {0, 2}


def test_queue_plan_takes_same_model_jobs_that_fit():
    a, b = object(), object()
    queue = BatchQueue(max_batch_frames=4, max_queued_frames=10)
    jobs = [job(a, [0]), job(b, [1]), job(a, [2, 3]), job(a, [4, 5]), job(a, [6])]
    for j in jobs:
        queue.push(j)
    assert queue.queued_frames == 7
    oldest = queue.take_oldest()
    assert oldest is jobs[0]
    taken, blocked = queue.take_same(a, 4 - oldest.frames)
    # [2, 3] fits (3 left -> 1); [4, 5] does not, and [6] may not jump ahead of it
    assert taken == [jobs[2]] and blocked
    assert queue.queued_frames == 4
    assert queue.take_oldest() is jobs[1]
    with pytest.raises(Overloaded):
        queue.push(job(a, range(8)))
