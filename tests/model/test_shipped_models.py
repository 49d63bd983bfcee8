"""The packages shipped in models/: what `make run` serves and docs/latency.md describes."""

from __future__ import annotations

from conftest import DEMO_PACKAGE, LOW_LATENCY_PACKAGE

from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.model.package import load_package, scan_packages

SIZE_BUDGET_BYTES = 25 * 1024 * 1024  # per shipped package (docs/model-package.md)


def _size(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_the_shipped_packages_load_within_the_size_budget():
    folders = scan_packages(DEMO_PACKAGE.parent)

    assert [p.name for p in folders] == ["demo", "demo-65ms"]
    for folder in folders:
        package = load_package(folder)
        assert _size(folder) <= SIZE_BUDGET_BYTES, package.name
        assert package.weight_families == ("onnx",), package.name  # serving-only


def test_the_low_latency_demo_is_the_demo_avatar_at_65ms_of_lookahead():
    demo, fast = load_package(DEMO_PACKAGE), load_package(LOW_LATENCY_PACKAGE)

    assert demo.layout == SYNCTALK2D and demo.lookahead_ms == 452.5
    assert fast.layout == FeatureLayout(15, 0, "frame_end") and fast.lookahead_ms == 65.0
    # the same portrait, idle frames and width; trained longer (docs/latency.md)
    assert fast.frame_count == demo.frame_count
    assert (fast.video_width, fast.video_height) == (demo.video_width, demo.video_height)
    assert fast.generator_width == demo.generator_width
    assert fast.metrics["steps"] == 5500 and demo.metrics["steps"] == 1100
    assert fast.metrics["held_out_frames"] > 500  # measured on held-out sentences
    assert fast.metrics["sync_correlation"] >= 0.8  # the low-latency target (docs/latency.md)
