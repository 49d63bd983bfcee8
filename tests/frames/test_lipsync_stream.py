"""A session's stream to the lip-sync service, over real loopback gRPC with the demo avatar."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from testkit.frames import decode_mouth

from lipstream.audio.pcm import AudioChunk
from lipstream.errors import ServiceUnavailable
from lipstream.frames.lipsync_client import LipSyncClient
from lipstream.frames.session import Session
from lipstream.service.server import start_lipsync_server
from lipstream.settings import load_settings

RATE = 16000


async def run_session(speech, make, on_job=None):
    """Every frame of one utterance, its jobs made by ``make(job)`` (retried while the
    service is unreachable, for at most 10 s); ``on_job(n)`` runs before job n."""
    session = Session(RATE, batch_size=5, audio_buffer_ms=10000)
    session.set_model(await make.client.model("demo"))
    session.push_audio(AudioChunk(speech, RATE))
    session.end_of_speech()
    n, gaps = 0, []
    while (job := session.next_job()) is not None:
        if on_job is not None:
            await on_job(n)
        n += 1
        asked = time.monotonic()
        deadline = asked + 10.0
        while True:
            try:
                mouths = await make(job)
                break
            except ServiceUnavailable:
                assert time.monotonic() < deadline, "the service never came back"
                await asyncio.sleep(0.05)
        gaps.append(time.monotonic() - asked)
        session.complete(job, mouths)
    return session.take_frames(), gaps


def test_a_stream_moves_to_another_instance_when_its_instance_dies(
    models_dir, speech16k, demo_package
):
    """Two instances behind gRPC's round robin; the one serving the stream is killed mid-
    utterance. The frames go on from the other, equal to those of an undisturbed session."""

    async def scenario():
        settings = load_settings(None, models_dir=models_dir, host="127.0.0.1", grpc_metrics_port=0)
        a = await start_lipsync_server(settings, port=0)
        b = await start_lipsync_server(settings, port=0)
        client = LipSyncClient(f"ipv4:{a.address},{b.address}", deadline_ms=20000)
        try:
            stream = client.open_stream("moving")

            async def streamed(job):
                return await stream.generate(job)

            streamed.client = client
            killed = []

            async def kill_the_serving_one(n):
                if n == 4:  # 20 frames in
                    open_on_a = a.servicer.metrics.registry.get_sample_value(
                        "lipstream_streams_active"
                    )
                    serving = a if open_on_a else b
                    killed.append(serving)
                    await serving.stop(grace=0)

            frames, gaps = await run_session(speech16k, streamed, kill_the_serving_one)

            async def plain(job):
                return await unary.generate(job, "reference")

            # the reference: the same session, unary, on the instance that lived
            unary = LipSyncClient((b if killed[0] is a else a).address, deadline_ms=20000)
            plain.client = unary
            reference, _ = await run_session(speech16k, plain)
            await unary.close()
            await stream.close()
            return frames, gaps, reference, stream.calls_opened
        finally:
            await client.close()
            await a.stop(0)
            await b.stop(0)

    frames, gaps, reference, calls = asyncio.run(scenario())
    assert calls == 2  # the stream was opened again, once
    assert [f.frame_index for f in frames] == list(range(len(reference)))
    assert len(frames) == -(-len(speech16k) // 640)
    for got, want in zip(frames, reference, strict=True):
        assert np.abs(decode_mouth(got.jpeg) - decode_mouth(want.jpeg)).max() <= 1
    assert max(gaps[5:]) < 5.0  # the job after the kill was not lost in a long wait
