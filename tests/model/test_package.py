"""Model packages load, decode and refuse anything broken with a message naming the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.errors import InvalidInput, PackageError
from lipstream.geometry import CropBox, crop_frame
from lipstream.model.package import (
    InvalidPackage,
    list_packages,
    load_package,
    lookahead_frames,
)
from lipstream.model.package_writer import PackageWriter, add_weights, update_metrics

FRAME_COUNT = 12
FRAME_SIZE = (480, 360)


@pytest.fixture
def package_copy(fake_package: Path, tmp_path: Path) -> Path:
    """A private copy of the fake package that a test may damage."""
    return Path(shutil.copytree(fake_package, tmp_path / "models" / "demo"))


def _edit_manifest(package: Path, edit) -> None:
    path = package / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_package_loads_with_its_declared_properties(fake_package, fake_avatar):
    assert (fake_avatar.frame_count, fake_avatar.frame_size) == (FRAME_COUNT, FRAME_SIZE)
    pkg = load_package(fake_package)
    assert pkg.name == "demo" and pkg.fps == 25 and pkg.frame_count == FRAME_COUNT
    assert pkg.generator_width == 0.25
    assert pkg.lookahead_ms == 452.5 and pkg.lookahead_frames == 11
    assert pkg.layout == SYNCTALK2D
    assert (pkg.video_width, pkg.video_height) == FRAME_SIZE
    assert pkg.weight_families == ("pytorch",)
    assert pkg.weights("pytorch.generator") == fake_package / "generator.safetensors"
    assert pkg.weights("onnx.generator_int8") is None
    with pytest.raises(InvalidInput, match=r"unknown weights key 'onnx.gen'"):
        pkg.weights("onnx.gen")


def test_bounds_follow_the_landmark_rule(fake_package, fake_avatar):
    pkg = load_package(fake_package)
    assert pkg.bounds.dtype == np.int32 and pkg.bounds.shape == (FRAME_COUNT, 4)
    assert pkg.bounds.tolist() == [fake_avatar.bounds(i) for i in range(FRAME_COUNT)]
    assert not pkg.bounds.flags.writeable


def test_crops_decode_to_328_and_match_the_frames(fake_package, fake_avatar):
    pkg = load_package(fake_package)
    crops = pkg.load_crops()
    assert crops.shape == (FRAME_COUNT, 328, 328, 3) and crops.dtype == np.uint8
    inner = pkg.load_inner_crops()
    assert inner.shape == (FRAME_COUNT, 320, 320, 3) and inner.flags.c_contiguous
    np.testing.assert_array_equal(inner[3], crops[3, 4:324, 4:324])
    # JPEG at quality 95 of the source JPEG: close to the crop computed from the frame itself.
    reference = crop_frame(fake_avatar.frame(5), CropBox.from_bounds(fake_avatar.bounds(5)))
    assert np.abs(crops[5].astype(int) - reference).mean() < 4.0


def test_video_decodes_to_every_frame_at_25_fps(fake_package, fake_avatar):
    pkg = load_package(fake_package)
    with av.open(str(pkg.video_path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 25
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    assert len(frames) == FRAME_COUNT
    assert frames[0].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    # The face in the video is where the bounds say it is.
    assert np.abs(frames[7].astype(int) - fake_avatar.frame(7)).mean() < 6.0


def _delete_crop(pkg: Path) -> None:
    (pkg / "crops" / "000003.jpg").unlink()


def _drop_lookahead(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["audio"].pop("lookahead_ms"))


def _bad_lookahead(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["audio"].update(lookahead_ms="abc"))


def _truncate_generator(pkg: Path) -> None:
    path = pkg / "generator.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])


def _bounds_outside(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["frames"]["bounds"][2].__setitem__(3, 400))


def _bounds_short(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["frames"]["bounds"].pop())


def _no_video(pkg: Path) -> None:
    (pkg / "video.mp4").unlink()


def _empty_encoder(pkg: Path) -> None:
    (pkg / "audio_encoder.safetensors").write_bytes(b"")


def _no_weights(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["weights"].update(pytorch={}))


def _escaping_path(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["video"].update(file="../other/video.mp4"))


def _wrong_width(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m["generator"].update(width=0.5))


def _bad_version(pkg: Path) -> None:
    _edit_manifest(pkg, lambda m: m.update(format_version=2))


def _layout_without_its_lookahead(pkg: Path) -> None:
    layout = {"rows_before": 13, "rows_after": 2, "alignment": "frame_end"}
    _edit_manifest(pkg, lambda m: m["audio"].update(layout=layout))  # lookahead still 452.5


def _bad_layout(pkg: Path) -> None:
    layout = {"rows_before": 13, "rows_after": 2, "alignment": "middle"}
    _edit_manifest(pkg, lambda m: m["audio"].update(layout=layout))


def test_a_package_declares_its_feature_layout_and_its_lookahead_follows(package_copy):
    layout = FeatureLayout(13, 2, "frame_end")

    def low_latency(m):
        m["audio"].update(layout=layout.to_dict(), lookahead_ms=145.0, lookahead_frames=3)

    _edit_manifest(package_copy, low_latency)
    pkg = load_package(package_copy)
    assert pkg.layout == layout
    assert (pkg.lookahead_ms, pkg.lookahead_frames) == (145.0, 3)


def test_lookahead_frames_counts_the_frame_holding_the_newest_sample():
    assert [lookahead_frames(ms) for ms in (452.5, 440.0, 440.1, 40.0, 20.0)] == [11, 10, 11, 0, 0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_delete_crop, "frames: crop crops/000003.jpg missing"),
        (_drop_lookahead, "manifest.json: audio.lookahead_ms is missing"),
        (_bad_lookahead, "manifest.json: audio.lookahead_ms must be a positive number, got 'abc'"),
        (_truncate_generator, "weights.pytorch.generator: generator.safetensors is truncated"),
        (_bounds_outside, "frames.bounds[2]"),
        (_bounds_short, "frames.bounds has 11 boxes but frames.count is 12"),
        (_no_video, "video.file: video.mp4 is missing"),
        (_empty_encoder, "weights.pytorch.audio_encoder: audio_encoder.safetensors is empty"),
        (_no_weights, "weights must name at least one complete runtime family"),
        (_escaping_path, "video.file must be a relative path inside the package"),
        (_wrong_width, "generator.width 0.5 needs 16"),
        (_bad_version, "format_version must be 1"),
        (_layout_without_its_lookahead, "audio.lookahead_ms must be 145, the lookahead of"),
        (_bad_layout, "feature alignment must be one of synctalk2d, frame_end, got 'middle'"),
    ],
)
def test_broken_package_is_refused_naming_the_problem(package_copy, damage, message):
    damage(package_copy)
    with pytest.raises(InvalidPackage) as err:
        load_package(package_copy)
    assert any(message in p for p in err.value.problems), err.value.problems
    assert message in str(err.value)


def test_every_problem_is_reported_at_once(package_copy):
    _delete_crop(package_copy)
    _bad_lookahead(package_copy)
    _truncate_generator(package_copy)
    with pytest.raises(InvalidPackage) as err:
        load_package(package_copy)
    assert len(err.value.problems) == 3, err.value.problems


def test_missing_or_foreign_manifest_is_refused(package_copy):
    (package_copy / "manifest.json").write_text('{"hello": 1}')
    with pytest.raises(InvalidPackage, match=r"manifest.json: format is missing"):
        load_package(package_copy)
    (package_copy / "manifest.json").unlink()
    with pytest.raises(InvalidPackage, match=r"manifest.json is missing"):
        load_package(package_copy)


def _write_tiny_package(models: Path, name: str, size=(64, 48), frames=2, **kw) -> Path:
    """A package from numpy weights (no torch needed), for writer tests."""
    rng = np.random.default_rng(1)
    with PackageWriter(models, name, **kw) as writer:
        for _ in range(frames):
            frame = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            writer.add_frame(frame, CropBox(10, 10, 40, 40))
        writer.add_weights("pytorch.generator", {"inc.inconv.0.conv.6.weight": np.ones((8, 12))})
        writer.add_weights("pytorch.audio_encoder", {"w": np.zeros(3, np.float32)}, float16=True)
        return writer.commit(generator_width=0.25).path


def test_odd_frame_sizes_are_padded_for_yuv420(tmp_path):
    path = _write_tiny_package(tmp_path, "odd", size=(65, 47))
    pkg = load_package(path)
    assert (pkg.video_width, pkg.video_height) == (66, 48)
    with av.open(str(pkg.video_path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 2 and (frames[0].width, frames[0].height) == (66, 48)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 65, "sp ace"])
def test_bad_names_are_refused_and_nothing_is_written(tmp_path, name):
    models = tmp_path / "models"
    with pytest.raises(InvalidInput, match=r"package name .* is not allowed"):
        PackageWriter(models, name)
    assert not models.exists() or not any(models.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["models"])


def test_failure_while_writing_leaves_nothing_behind(tmp_path):
    models = tmp_path / "models"
    with pytest.raises(RuntimeError), PackageWriter(models, "demo") as writer:
        writer.add_frame(np.zeros((48, 64, 3), np.uint8), CropBox(10, 10, 40, 40))
        raise RuntimeError("interrupted")
    assert list(models.iterdir()) == []


def test_commit_without_weights_is_refused_and_leaves_nothing(tmp_path):
    models = tmp_path / "models"
    writer = PackageWriter(models, "demo")
    writer.add_frame(np.zeros((48, 64, 3), np.uint8), CropBox(10, 10, 40, 40))
    with pytest.raises(InvalidPackage, match=r"complete runtime family"):
        writer.commit(generator_width=0.25)
    assert list(models.iterdir()) == []


def test_existing_package_is_kept_unless_forced(tmp_path):
    path = _write_tiny_package(tmp_path, "demo", frames=2)
    with pytest.raises(PackageError, match=r"already exists"):
        _write_tiny_package(tmp_path, "demo", frames=3)
    assert load_package(path).frame_count == 2
    _write_tiny_package(tmp_path, "demo", frames=3, force=True)
    assert load_package(path).frame_count == 3
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_onnx_weights_are_added_one_by_one(package_copy, tmp_path):
    model = tmp_path / "g.onnx"
    model.write_bytes(b"\x08\x07fake onnx bytes")
    pkg = add_weights(package_copy, "onnx.generator_int8", model)
    assert pkg.weights("onnx.generator_int8") == package_copy / "generator_int8.onnx"
    assert pkg.weight_families == ("pytorch",)  # the ONNX family lacks its audio encoder so far
    pkg = add_weights(package_copy, "onnx.audio_encoder", model)
    assert pkg.weight_families == ("pytorch", "onnx")
    assert load_package(package_copy).weights("onnx.audio_encoder") is not None


def test_bad_weights_are_refused_and_the_manifest_kept(package_copy, tmp_path):
    before = (package_copy / "manifest.json").read_text()
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match=r"missing or empty"):
        add_weights(package_copy, "onnx.generator_fp32", empty)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\xff" * 16)
    with pytest.raises(PackageError, match=r"broken.safetensors is truncated"):
        add_weights(package_copy, "pytorch.generator", broken)
    with pytest.raises(InvalidInput, match=r"unknown weights key"):
        add_weights(package_copy, "tensorrt.generator", empty)
    assert (package_copy / "manifest.json").read_text() == before


def test_metrics_are_merged_into_the_manifest(package_copy):
    update_metrics(package_copy, {"psnr_int8": 31.5})
    pkg = update_metrics(package_copy, {"ms_per_frame": 12})
    assert dict(pkg.metrics) == {"psnr_int8": 31.5, "ms_per_frame": 12}
    with pytest.raises(InvalidInput, match=r"finite numbers"):
        update_metrics(package_copy, {"psnr": "high"})


def test_list_packages_separates_valid_from_broken(package_copy):
    models = package_copy.parent
    broken = models / "broken"
    shutil.copytree(package_copy, broken)
    (broken / "crops" / "000000.jpg").unlink()
    (models / ".demo.abc.partial").mkdir()  # a writer's temporary folder is not a package
    scan = list_packages(models)
    assert [p.name for p in scan.packages] == ["demo"]
    assert list(scan.errors) == ["broken"] and "crops/000000.jpg" in scan.errors["broken"]
    assert list_packages(models / "absent") == ((), {})


def test_removing_a_runtime_family_keeps_the_package_valid(package_copy):
    from lipstream.model.package_writer import remove_weights

    with pytest.raises(PackageError, match="left without weights"):
        remove_weights(package_copy, "pytorch")  # its only runtime
    assert (package_copy / "generator.safetensors").is_file()


def test_a_package_whose_folder_and_manifest_names_differ_is_refused_saying_which(package_copy):
    models = package_copy.parent
    shutil.copytree(package_copy, models / "renamed")  # its manifest still says "demo"
    scan = list_packages(models)
    assert [p.name for p in scan.packages] == ["demo"]
    problem = scan.errors["renamed"]
    assert "named 'demo'" in problem and "folder 'renamed'" in problem
