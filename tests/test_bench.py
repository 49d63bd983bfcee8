"""The benchmarks: `lipstream bench model` times every runtime; `bench e2e` streams speech."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from lipstream import bench
from lipstream.errors import InvalidInput


def test_bench_model_times_each_runtime_at_batch_one_and_the_batch_size():
    lines: list[str] = []
    report = bench.bench_model(
        widths=[0.25], runtimes=["onnx-fp32"], batch=2, seconds=0.05, log=lines.append
    )
    timings = report["timings"]
    assert [(t.runtime, t.width, t.batch) for t in timings] == [
        ("onnx-fp32", 0.25, 1),
        ("onnx-fp32", 0.25, 2),
    ]
    assert all(t.median_ms > 0 and t.fps > 0 and t.best_ms <= t.median_ms for t in timings)
    text = "\n".join(lines)
    assert "ms/frame" in text and "frames/s" in text
    assert "random-weight" in text  # says that speed, not quality, is measured
    assert "onnxruntime" in report["machine"] and "cpu" in report["machine"]
    assert set(report["jpeg_ms"]) == {"simplejpeg", "opencv"}
    assert "JPEG encode" in text


def test_bench_command_line_registers_model_subcommand(monkeypatch):
    monkeypatch.setenv("INFERENCE_BATCH_SIZE", "3")
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["bench", "model", "--widths", "1,0.25", "--runtimes", "onnx-fp32,onnx-int8"]
    )
    assert args.func is bench._run_model
    assert args.widths == [1.0, 0.25]
    assert args.runtimes == ["onnx-fp32", "onnx-int8"]
    assert args.batch == 3


def test_synthetic_inputs_have_the_runtime_shapes():
    crops = bench.synthetic_crops(2)
    assert crops.shape == (2, 320, 320, 3) and crops.dtype == np.uint8
    audio = bench.synthetic_audio(2)
    assert audio.shape == (2, 32, 16, 16) and audio.dtype == np.float32


def test_bench_e2e_streams_speech_through_the_system_and_gets_every_frame(
    running_system, speech_wav
):
    import asyncio

    from lipstream import bench_e2e
    from lipstream.audio.files import read_audio_file

    rate = 24000
    pcm = read_audio_file(speech_wav, rate).samples
    url = running_system.websocket_url
    row = asyncio.run(bench_e2e.run_sessions(url, pcm, rate, 2))  # binary frames
    json_row = asyncio.run(bench_e2e.run_sessions(url, pcm[: rate * 2], rate, 1, binary=False))
    assert json_row["missing_frames"] == 0 and json_row["errors"] == []

    assert row["sessions"] == 2
    assert row["errors"] == []
    assert row["missing_frames"] == 0  # every 40 ms of speech, in both sessions, got its frame
    assert row["fps_per_session"] > 0
    for key in ("server_latency_p50_ms", "client_latency_p95_ms"):
        assert 0 <= row[key] < 10_000, key
    # the delay the console would play with: the server's figure plus the console's margin
    assert row["listener_delay_ms"] > 452.5 + bench_e2e.CONSOLE_SAFETY_MS
    assert 0 <= row["on_time_share"] <= 1
    table = bench_e2e.format_table([row])
    assert table.splitlines()[-1].startswith("| 2 | ")


def _session(received_ms: list[float | None], delay_ms: float):
    """A finished bench session whose first chunk went at t=0 and frame k came at
    ``received_ms[k]`` (None: never), told a pipeline latency of ``delay_ms``."""
    from lipstream import bench_e2e

    result = bench_e2e.SessionResult(frames_expected=len(received_ms), sent_at=[0.0])
    result.pipeline_latency_ms = delay_ms - bench_e2e.CONSOLE_SAFETY_MS
    result.latency_measured = True
    for k, at in enumerate(received_ms):
        if at is not None:
            result.frames.append({"frame_index": k})
            result.received_at.append(at / 1000.0)
    return result


def test_the_listener_sees_each_frame_on_time_or_the_previous_mouth_held():
    # delay 200 ms: frame k is painted at 200 + 40k ms
    on_time = _session([190.0 + 40 * k for k in range(10)], 200.0)
    offsets, own, none = on_time.paints()
    assert (own, none) == (10, 0) and max(offsets) == 0
    # frame 4 comes 50 ms late: its time shows frame 3 (40 ms behind), then it catches up
    late = _session([190.0 + 40 * k + (50.0 if k == 4 else 0.0) for k in range(10)], 200.0)
    offsets, own, none = late.paints()
    assert (own, none) == (9, 0) and sorted(offsets)[-1] == 40.0
    # frames 3..6 never come: two frame times hold frame 2, the next two have no mouth
    gap = _session([None if 3 <= k <= 6 else 190.0 + 40 * k for k in range(10)], 200.0)
    offsets, own, none = gap.paints()
    assert (own, none) == (6, 2) and sorted(offsets)[-2:] == [40.0, 80.0]
    # while the server's figure is a guess, the console adds its first-stream margin
    guess = _session([0.0], 200.0)
    guess.latency_measured = False
    assert guess.listener_delay_ms() == 200.0 + 150.0


def test_bench_sync_refuses_an_unknown_source_saying_which_it_takes(capsys):
    from lipstream.cli import main

    assert main(["bench", "sync", "--sources", "text,tv"]) == 2
    err = capsys.readouterr().err
    assert "--sources takes text,file,mic" in err and "'text,tv'" in err


def test_bench_sync_formats_one_row_per_played_source():
    from lipstream.bench_sync import format_table

    offsets = {"count": 240, "p50": 0.4, "p95": 18.2, "p99": 19.5, "min": -19.9, "max": 19.7}
    none = dict.fromkeys(("p50", "p95", "p99", "min", "max"), None) | {"count": 0}
    row = {
        "model": "demo-65ms",
        "source": "mic",
        "frame_times": 200,
        "on_time": 190,
        "held": 8,
        "no_mouth": 2,
        "late_share": 0.05,
        "on_time_offset": offsets,
        "held_offset": none,
        "playback_delay_ms": 612.0,
        "server_latency_p95_ms": 35.2,
    }
    last = format_table([row]).splitlines()[-1]
    assert last == (
        "| demo-65ms | mic | 200 | 95.0% | 4.0% | 1.0% | 0 / 18 / 20 ms | – ms | 612 ms | 35 ms |"
    )


def test_a_speed_package_serves_the_avatar_with_a_network_of_another_width(tmp_path, demo_package):
    from lipstream.bench_package import speed_package
    from lipstream.model.engine import open_model
    from lipstream.model.package import load_package

    folder = speed_package(demo_package, 0.5, tmp_path)
    pkg = load_package(folder)
    demo = load_package(demo_package)
    assert pkg.name == "demo_w0_5" and pkg.generator_width == 0.5
    assert pkg.frame_count == demo.frame_count and pkg.source["speed-only"] is True
    assert (demo.path / "generator_int8.onnx").stat().st_size != (
        folder / "generator_int8.onnx"
    ).stat().st_size  # its own network, not the demo's
    model = open_model(folder, "onnx-int8", "cpu")
    mouths = model.generator.generate([0, 1], np.zeros((2, 32, 16, 16), np.float32))
    assert mouths.shape == (2, 320, 320, 3)


def test_bench_soak_samples_each_service_while_sessions_stream(speech_wav, demo_package):
    import asyncio

    from lipstream.audio.files import read_audio_file
    from lipstream.bench_soak import SERVICES, Services, soak

    pcm = read_audio_file(speech_wav, 24000).samples[: 2 * 24000]  # two-second utterances
    services = Services(demo_package.parent)
    lines: list[str] = []
    try:
        result = asyncio.run(soak(services, pcm, 24000, 0.1, 2, 2.0, log=lines.append))
    finally:
        services.stop()
    assert result.utterances >= 2 and result.errors == {}
    assert result.frames_delivered == result.frames_expected == 50 * result.utterances
    assert result.api_calls == 3 * result.utterances
    assert len(result.samples) >= 3 and len(lines) == len(result.samples) - 1
    for name in SERVICES:
        assert all(s[f"{name}_rss_mib"] > 10 and s[f"{name}_fds"] > 2 for s in result.samples)
    assert all(p.poll() is not None for p in services.processes.values())  # all stopped


def test_the_benchmark_models_the_consoles_own_margins():
    import re

    from lipstream import bench_e2e

    js = (Path(bench_e2e.__file__).parent / "console" / "av_sync.js").read_text()
    assert float(re.search(r"this\.safetyMs = (\d+)", js).group(1)) == bench_e2e.CONSOLE_SAFETY_MS
    unlearned = re.search(r"const UNLEARNED_LIVE_MS = (\d+)", js).group(1)
    assert float(unlearned) == bench_e2e.CONSOLE_UNLEARNED_MS
    held = re.search(r"const HOLD_MISSING_FRAMES = (\d+)", js).group(1)
    assert int(held) == bench_e2e.CONSOLE_HOLD_FRAMES


def test_bench_webrtc_times_compositing_and_encoding_per_call(demo_package, capsys):
    from lipstream.bench_webrtc import bench_webrtc

    rows = bench_webrtc(demo_package, ["vp8"], seconds=0.1)
    assert [(r["codec"], r["size"]) for r in rows] == [("vp8", "512x512")]
    assert rows[0]["cpu_ms"] > 0 and rows[0]["calls_per_core"] > 0
    assert "| vp8 | 512x512 |" in capsys.readouterr().out


def test_bench_webrtc_names_the_codecs_it_takes():
    from lipstream.bench_webrtc import _run

    args = argparse.Namespace(codecs="av1", package=Path("models/demo"), seconds=0.1)
    with pytest.raises(InvalidInput, match="vp8,h264"):
        _run(args)
