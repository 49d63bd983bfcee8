"""Building a training dataset from a real talking-head clip, and the ways a build can fail."""

from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("dlib", reason="the face landmark detector needs dlib-bin")

from lipstream.audio.pcm import AudioChunk  # noqa: E402
from lipstream.avatar import commands  # noqa: E402
from lipstream.avatar.dataset import build_dataset, load_dataset  # noqa: E402
from lipstream.avatar.face_track import CENTRE_WINDOW, resolve_faces, smooth_squares  # noqa: E402
from lipstream.avatar.source_video import frames_at_25fps  # noqa: E402
from lipstream.errors import InvalidInput  # noqa: E402
from lipstream.video import Mp4Writer, read_video_frames  # noqa: E402

# An animated talking head with its sound track (speech over music), 720x528 at 23.976 fps;
# Debian ships it in the opencv-doc package. Its first frame is black, which at 25 fps covers
# the first two frames.
MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
SECONDS = 3.0


@pytest.fixture(scope="module")
def megamind() -> Path:
    if not MEGAMIND.is_file():
        pytest.skip(f"{MEGAMIND} not found (Debian package opencv-doc)")
    return MEGAMIND


@pytest.fixture(scope="module")
def built(megamind: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first three seconds of Megamind built into a dataset."""
    root = tmp_path_factory.mktemp("datasets")
    return build_dataset(megamind, "roxanne", root, progress=False, max_seconds=SECONDS)


def tone_clip(path: Path, frames: list[np.ndarray], fps: int = 25, audio: bool = True) -> Path:
    """An MP4 of ``frames``, with a 220 Hz tone as its sound track unless ``audio`` is False."""
    height, width = frames[0].shape[:2]
    writer = Mp4Writer(path, width, height, fps, audio_rate=16000 if audio else None)
    for frame in frames:
        writer.write(frame)
    if audio:
        t = np.arange(round(len(frames) / fps * 16000)) / 16000
        writer.write_audio(AudioChunk.from_float(0.3 * np.sin(2 * np.pi * 220 * t), 16000))
    writer.close()
    return path


def gradient_frames(count: int) -> list[np.ndarray]:
    ramp = np.linspace(0, 255, 160, dtype=np.uint8)
    return [np.dstack([np.tile(np.roll(ramp, 3 * i), (120, 1))] * 3) for i in range(count)]


# --------------------------------------------------------------------------------------------
# A real talking head


def test_dataset_loads_back_and_is_consistent(built: Path) -> None:
    data = load_dataset(built)
    assert data.name == "roxanne" and data.fps == 25
    # The clip's black start is dropped; the rest of the three seconds is kept.
    assert data.dropped == {"leading": 2, "trailing": 0}
    assert data.frame_count == round(SECONDS * 25) - 2
    assert (data.video_width, data.video_height) == (720, 528)
    assert data.landmarks.shape == (data.frame_count, 68, 2)
    assert len(data.bounds) == len(data.mouth_opening) == data.frame_count
    assert sorted(p.name for p in data.crops_dir.iterdir())[-1] == f"{data.frame_count - 1:06d}.jpg"
    assert data.read_crop(data.frame_count - 1).shape == (328, 328, 3)
    manifest = json.loads((built / "dataset.json").read_text())
    assert manifest["source"]["file"] == "Megamind.avi"
    assert manifest["source"]["fps"] == pytest.approx(23.976, abs=1e-3)
    # Nothing is left beside the dataset.
    assert [p.name for p in built.parent.iterdir()] == ["roxanne"]


def test_speech_lasts_exactly_the_frames(built: Path) -> None:
    data = load_dataset(built)
    with wave.open(str(data.speech_path)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    assert len(samples) == data.frame_count * 640
    assert np.abs(samples).max() > 1000  # the sound track, not silence


def test_video_holds_exactly_the_cropped_frames(built: Path) -> None:
    data = load_dataset(built)
    frames = list(read_video_frames(data.video_path))
    assert len(frames) == data.frame_count
    # The crop of a frame is cut from that very frame of the video (H.264 and JPEG aside).
    from lipstream.geometry import crop_frame

    for index in (0, data.frame_count // 2, data.frame_count - 1):
        crop = crop_frame(frames[index], data.box(index)).astype(np.float32)
        assert np.abs(crop - data.read_crop(index)).mean() < 6.0


def test_landmarks_land_on_the_face_in_every_frame(built: Path) -> None:
    data = load_dataset(built)
    for points, (xmin, ymin, xmax, ymax) in zip(data.landmarks, data.bounds, strict=True):
        mouth = points[48:68]
        assert np.all((mouth[:, 0] > xmin) & (mouth[:, 0] < xmax))
        assert np.all((mouth[:, 1] > ymin) & (mouth[:, 1] < ymax))
        assert points[36:48, 1].max() < ymin + 0.1 * (ymax - ymin)  # the eyes stay above


def test_box_is_steady(built: Path) -> None:
    data = load_dataset(built)
    bounds = data.bounds.astype(np.float64)
    side = bounds[:, 2] - bounds[:, 0]
    centre = (bounds[:, :2] + bounds[:, 2:]) / 2
    step = np.linalg.norm(np.diff(centre, axis=0), axis=1) / side[1:]
    shake = np.linalg.norm(np.diff(centre, 2, axis=0), axis=1) / side[2:]
    # She moves her head, so the box moves; it must not jump or shake from frame to frame.
    assert step.max() < 0.1
    assert shake.mean() < 0.03
    assert side.max() - side.min() <= 0.15 * side.mean()


def test_mouth_opening_varies_with_speech(built: Path) -> None:
    opening = load_dataset(built).mouth_opening
    assert opening.min() < 0.05  # closed at times
    assert opening.max() > 0.2  # wide open at others
    assert opening.std() > 0.04


# --------------------------------------------------------------------------------------------
# Refusals


def test_video_without_a_face_fails_and_leaves_nothing(tmp_path: Path) -> None:
    clip = tone_clip(tmp_path / "gradient.mp4", gradient_frames(10))
    datasets = tmp_path / "datasets"
    with pytest.raises(InvalidInput, match="no face found in .*gradient.mp4"):
        build_dataset(clip, "nobody", datasets, progress=False)
    assert not datasets.exists() or not any(datasets.iterdir())


def test_video_without_audio_fails_clearly(tmp_path: Path) -> None:
    clip = tone_clip(tmp_path / "silent.mp4", gradient_frames(5), audio=False)
    with pytest.raises(InvalidInput, match="silent.mp4 has no audio track"):
        build_dataset(clip, "mute", tmp_path / "datasets", progress=False)
    assert not (tmp_path / "datasets").exists()


def test_unreadable_and_missing_files_fail_clearly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InvalidInput, match="junk.mp4 is not a readable video file"):
        build_dataset(junk, "junk", tmp_path / "datasets", progress=False)
    with pytest.raises(InvalidInput, match="video file not found"):
        build_dataset(tmp_path / "absent.mp4", "absent", tmp_path / "datasets", progress=False)
    wav = tmp_path / "voice.wav"
    from lipstream.audio.files import write_wav

    write_wav(wav, AudioChunk(np.zeros(1600, np.int16), 16000))
    with pytest.raises(InvalidInput, match="voice.wav has no video track"):
        build_dataset(wav, "voice", tmp_path / "datasets", progress=False)


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="dataset name .* is not allowed"):
        build_dataset(tmp_path / "whatever.mp4", name, tmp_path / "datasets", progress=False)
    assert not (tmp_path / "datasets").exists()


def test_load_dataset_names_the_problems(built: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    (broken / "crops" / "000003.jpg").unlink()
    (broken / "speech.wav").unlink()
    manifest = json.loads((broken / "dataset.json").read_text())
    manifest["bounds"][2] = [0, 0, 5000, 5000]
    (broken / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidInput) as info:
        load_dataset(broken)
    message = str(info.value)
    assert "crop(s) missing" in message and "[3]" in message
    assert "speech.wav is missing" in message
    assert "bounds of frames [2]" in message
    with pytest.raises(InvalidInput, match="dataset.json is missing"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------------------------
# The parts: 25 fps by timestamp, gaps, smoothing


def numbered_frames(count: int) -> list[np.ndarray]:
    """Dark frames with a white bar at x = 8 x their index, to tell them apart after decoding."""
    frames = []
    for i in range(count):
        frame = np.zeros((32, 8 * count, 3), np.uint8)
        frame[:, 8 * i : 8 * i + 8] = 255
        frames.append(frame)
    return frames


@pytest.mark.parametrize(("fps", "count"), [(50, 20), (10, 8), (25, 6)])
def test_frames_are_taken_by_timestamp(tmp_path: Path, fps: int, count: int) -> None:
    clip = tone_clip(tmp_path / f"at{fps}.mp4", numbered_frames(count), fps=fps, audio=False)
    shown = [int(f.mean(axis=(0, 2)).argmax()) // 8 for f in frames_at_25fps(clip)]
    # Frame k is the source frame on screen at k/25 s, up to the end of the last one.
    expected = [int(k * fps / 25 + 1e-9) for k in range(count * 25 // fps)]
    assert shown == expected


def test_rotation_tags_are_applied(tmp_path: Path) -> None:
    # A phone stores portrait video sideways and tags how to turn it for display.
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4")
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # counterclockwise
        stored = np.zeros((32, 64, 3), np.uint8)
        stored[:, :16] = 255  # white along the left of the stored picture
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    shown = next(frames_at_25fps(path))
    assert shown.shape == (64, 32, 3)  # upright: portrait
    rows = shown.mean(axis=(1, 2))
    assert rows[52:].min() > 200 and rows[:44].max() < 50  # the left side turned to the bottom


def test_short_gaps_are_interpolated_and_ends_dropped() -> None:
    face = np.zeros((68, 2), np.float32)
    points: list[np.ndarray | None] = [None, None, face, None, None, face + 30, face + 30, None]
    track = resolve_faces(points, "clip.mp4")
    assert (track.first, track.dropped_leading, track.dropped_trailing) == (2, 2, 1)
    assert track.interpolated == [1, 2]
    assert len(track.landmarks) == 5
    np.testing.assert_allclose(track.landmarks[1:3, 0, 0], [10.0, 20.0])


def test_long_gaps_are_refused_with_their_frames() -> None:
    face = np.zeros((68, 2), np.float32)
    points: list[np.ndarray | None] = [face] * 30 + [None] * 13 + [face] * 5
    with pytest.raises(InvalidInput, match=r"no face found in clip.mp4 in frames 30-42 \(1.20-"):
        resolve_faces(points, "clip.mp4")
    with pytest.raises(InvalidInput, match="^no face found in clip.mp4$"):
        resolve_faces([None] * 4, "clip.mp4")


def test_smoothing_removes_shake_but_keeps_cuts() -> None:
    rng = np.random.default_rng(0)
    count = 60
    squares = np.zeros((count, 3))
    squares[:, 0] = 100 + rng.normal(0, 3, count)
    squares[:, 1] = 80 + rng.normal(0, 3, count)
    squares[:, 2] = 120 + rng.normal(0, 2, count)
    squares[40:, 0] += 300  # a cut: the face is elsewhere from frame 40
    smooth = smooth_squares(squares)
    assert np.std(np.diff(smooth[5:35, 0])) < 0.4 * np.std(np.diff(squares[5:35, 0]))
    # No blending across the cut: the frames beside it stay where their face is.
    assert abs(smooth[39, 0] - 100) < 10 and abs(smooth[40, 0] - 400) < 10
    assert CENTRE_WINDOW % 2 == 1


# --------------------------------------------------------------------------------------------
# The command


def run_build(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lipstream")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["build", *argv])
    return int(args.func(args))


def test_build_command(megamind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    datasets = tmp_path / "datasets"
    argv = [str(megamind), "--name", "clip", "--datasets-dir", str(datasets), "--max-seconds", "1"]
    assert run_build(argv) == 0
    out = capsys.readouterr().out
    assert "dataset clip: 23 frames (0.92 s) at 25 fps, video 720x528" in out
    assert "2 frame(s) at the start" in out
    with pytest.raises(InvalidInput, match="already exists .*--force"):
        run_build(argv)
    assert run_build([*argv[:-1], "0.6", "--force"]) == 0
    assert load_dataset(datasets / "clip").frame_count == 13
    assert sorted(p.name for p in datasets.iterdir()) == ["clip"]


def test_a_real_video_trains_into_a_package_that_renders(built: Path, tmp_path: Path) -> None:
    """build -> train -> export -> render, end to end on a real talking-head video."""
    from lipstream.avatar.train import TrainConfig, train
    from lipstream.model.engine import open_model
    from lipstream.model.package_export import export_package
    from lipstream.render import render

    result = train(
        built,
        tmp_path / "models",
        "megamind",
        TrainConfig(width=0.125, steps=2, batch_size=2, threads=1),
        run_dir=tmp_path / "run",
        progress=False,
    )
    assert result.package.frame_count == load_dataset(built).frame_count
    assert "psnr_mouth_db" in result.package.metrics
    package = export_package(result.package.path)
    assert package.weights("onnx.generator_int8") is not None
    count = render(package.speech_path, open_model(package), tmp_path / "talk.mp4")
    assert len(list(read_video_frames(tmp_path / "talk.mp4"))) == count > 0
