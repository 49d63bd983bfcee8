"""Training datasets: turning a talking-head video into one, and reading one back.

A dataset is a folder described by ``dataset.json`` (docs/avatar-builder.md): the avatar's
full-body video at 25 fps, a 328x328 face crop and a crop box per frame, the face landmarks,
the mouth opening and the speech, 40 ms of it per frame. ``build_dataset`` reads the video
(``source_video``), finds the face on every frame and derives steady crop boxes
(``face_track``), and writes the folder under a hidden name beside its destination, moved into
place when complete, so a half-built dataset never appears (``lipstream.staging``).
``load_dataset`` reads one back, checking it and listing every problem found.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from tqdm import tqdm

from lipstream.audio.files import write_wav
from lipstream.audio.pcm import AudioChunk
from lipstream.audio.timeline import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from lipstream.avatar.face_track import MAX_GAP_FRAMES, resolve_faces, steady_boxes
from lipstream.avatar.landmarks import FaceLandmarker, mouth_opening
from lipstream.avatar.source_video import (
    DecodeStats,
    frames_at_25fps,
    probe_video,
    read_audio_track,
)
from lipstream.errors import InvalidInput
from lipstream.geometry import CROP_SIZE, CropBox, crop_frame
from lipstream.manifest import (
    MISSING,
    ManifestReader,
    check_file,
    check_wav,
    is_finite_number,
    is_int,
    show,
)
from lipstream.model.package import check_name, crop_filename, encode_crop
from lipstream.staging import move_into_place, staging_folder
from lipstream.video import Mp4Writer

FORMAT = "lipstream-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
CROPS_DIR = "crops"
VIDEO_FILE = "video.mp4"
SPEECH_FILE = "speech.wav"
LANDMARKS_FILE = "landmarks.npy"


# --------------------------------------------------------------------------------------------
# Building


def _check_dataset_name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidInput as exc:
        raise InvalidInput(str(exc).replace("package name", "dataset name", 1)) from None


def build_dataset(
    video: str | Path,
    name: str,
    datasets_dir: str | Path = "datasets",
    progress: bool = True,
    *,
    force: bool = False,
    max_seconds: float | None = None,
    max_gap: int = MAX_GAP_FRAMES,
) -> Path:
    """Build the training dataset ``datasets_dir/name`` from a talking-head video; its path.

    ``max_seconds`` uses only the start of the video; ``force`` replaces an existing dataset.
    Everything is checked (tracks, faces) before anything is written.
    """
    video = Path(video)
    name = _check_dataset_name(name)
    datasets_dir = Path(datasets_dir)
    destination = datasets_dir / name
    if destination.exists() and not force:
        raise InvalidInput(f"dataset {destination} already exists (use --force to replace it)")
    if max_seconds is not None and not max_seconds > 0:
        raise InvalidInput(f"max_seconds must be positive, got {max_seconds}")
    info = probe_video(video)
    max_frames = None if max_seconds is None else math.ceil(max_seconds * FPS)
    expected = math.floor(info.duration * FPS) if info.duration else None
    if expected is not None and max_frames is not None:
        expected = min(expected, max_frames)

    notes: list[str] = []
    audio_stats = DecodeStats()
    audio = read_audio_track(video, max_seconds, audio_stats)
    if audio_stats.bad_packets:
        notes.append(f"{audio_stats.bad_packets} undecodable audio packet(s) replaced by silence")

    # Pass 1: landmarks on every frame. Frames are decoded again for writing rather than kept:
    # an hour of HD video does not fit in memory.
    landmarker = FaceLandmarker()
    points: list[np.ndarray | None] = []
    size: tuple[int, int] | None = None
    video_stats = DecodeStats()
    frames = frames_at_25fps(video, max_frames, video_stats)
    for frame in tqdm(
        frames, total=expected, desc="finding faces", unit="frame", disable=not progress
    ):
        if size is None:
            size = (frame.shape[1], frame.shape[0])
        elif size != (frame.shape[1], frame.shape[0]):
            raise InvalidInput(
                f"{video}: frame {len(points)} is {frame.shape[1]}x{frame.shape[0]}, earlier "
                f"frames are {size[0]}x{size[1]}; the picture size must not change"
            )
        points.append(landmarker.track(frame))
    if size is None:
        raise InvalidInput(f"{video} holds no decodable video frames")
    if video_stats.bad_packets:
        notes.append(f"{video_stats.bad_packets} undecodable video packet(s) skipped")
    track = resolve_faces(points, video, max_gap)
    count = len(track.landmarks)
    boxes = steady_boxes(track.landmarks, *size)
    openings = [mouth_opening(p) for p in track.landmarks]

    # Audio for exactly the kept frames: frame k <-> [40k, 40k + 40) ms.
    start = track.first * SAMPLES_PER_FRAME
    wanted = count * SAMPLES_PER_FRAME
    samples = audio.samples[start : start + wanted]
    if len(samples) < wanted:
        short = wanted - len(samples)
        if short > SAMPLES_PER_FRAME:
            notes.append(
                f"the audio track ends {short / SAMPLE_RATE:.2f} s early: padded with silence"
            )
        samples = np.concatenate([samples, np.zeros(short, np.int16)])

    tmp = staging_folder(destination)
    try:
        (tmp / CROPS_DIR).mkdir()
        writer = Mp4Writer(tmp / VIDEO_FILE, size[0], size[1], FPS)
        try:
            frames = frames_at_25fps(video, track.first + count)
            bar = tqdm(total=count, desc="writing crops", unit="frame", disable=not progress)
            with bar:
                for k, frame in enumerate(frames):
                    i = k - track.first
                    if i < 0:
                        continue
                    crop = encode_crop(crop_frame(frame, boxes[i]))
                    (tmp / CROPS_DIR / crop_filename(i)).write_bytes(crop)
                    writer.write(frame)
                    bar.update()
            if writer.count != count:
                raise InvalidInput(
                    f"{video} gave {writer.count} frames on the second read, {count} on the first"
                )
            writer.close()
        except BaseException:
            writer.abort()
            raise
        write_wav(tmp / SPEECH_FILE, AudioChunk(samples, SAMPLE_RATE))
        np.save(tmp / LANDMARKS_FILE, track.landmarks.astype(np.float32))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "fps": FPS,
            "frame_count": count,
            "video": {"file": VIDEO_FILE, "width": size[0], "height": size[1]},
            "bounds": [box.as_list() for box in boxes],
            "mouth_opening": [round(float(v), 5) for v in openings],
            "interpolated_frames": track.interpolated,
            "dropped": {"leading": track.dropped_leading, "trailing": track.dropped_trailing},
            "source": {
                "file": video.name,
                "duration": round(len(points) / FPS, 3),
                "fps": round(info.fps, 3),
            },
            "notes": notes,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        load_dataset(tmp)
        move_into_place(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True, eq=False)
class AvatarDataset:
    """A validated dataset folder; arrays are read-only, paths absolute."""

    path: Path
    name: str
    fps: int
    frame_count: int
    video_path: Path
    video_width: int
    video_height: int
    bounds: np.ndarray  # int32 [N, 4]: xmin, ymin, xmax, ymax (exclusive) in video pixels
    mouth_opening: np.ndarray  # float32 [N]
    landmarks: np.ndarray  # float32 [N, 68, 2] in video pixels
    speech_path: Path
    crops_dir: Path
    interpolated_frames: list[int] = field(default_factory=list)
    dropped: Any = None
    source: Any = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def crop_path(self, index: int) -> Path:
        """The 328x328 crop of frame ``index``."""
        if not 0 <= index < self.frame_count:
            raise InvalidInput(f"frame {index} is outside 0..{self.frame_count - 1}")
        return self.crops_dir / crop_filename(index)

    def read_crop(self, index: int) -> np.ndarray:
        """Frame ``index``'s crop as BGR uint8 [328, 328, 3]."""
        path = self.crop_path(index)
        crop = simplejpeg.decode_jpeg(path.read_bytes(), colorspace="BGR")
        if crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            raise InvalidInput(f"crop {path} is {crop.shape}, not {CROP_SIZE}x{CROP_SIZE}x3")
        return crop

    def box(self, index: int) -> CropBox:
        """Frame ``index``'s crop box in video pixels."""
        return CropBox.from_bounds(self.bounds[index])


def load_dataset(path: str | Path) -> AvatarDataset:
    """Read and validate a dataset folder; InvalidInput lists every problem found."""
    root = Path(path).resolve()
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise InvalidInput(f"{root} is not a dataset: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{manifest_path} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{manifest_path}: format must be {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"{manifest_path}: format_version {version!r} is not supported (this lipstream reads "
            f"version {FORMAT_VERSION}; rebuild the dataset with 'lipstream build')"
        )
    problems: list[str] = []
    r = ManifestReader(manifest, problems)
    name = r.string("name")
    fps = r.get("fps")
    if fps is not MISSING and fps != FPS:  # by value: 25.0 passes, as it always has
        r.problem(f"fps must be {FPS}, got {show(fps)}")
    count = _or_zero(r.integer("frame_count"))
    width = _or_zero(r.integer("video.width"))
    height = _or_zero(r.integer("video.height"))
    video_path = root / VIDEO_FILE
    file = r.string("video.file")
    if file is not MISSING and Path(file).name != file:
        r.problem(f"video.file must be a file name inside the dataset, got {show(file)}")
    elif file is not MISSING:
        video_path = root / file
    check_file(video_path, "video.file", problems)

    bounds = np.zeros((0, 4), np.int32)
    raw_bounds = manifest.get("bounds")
    if not isinstance(raw_bounds, list) or len(raw_bounds) != count:
        size = len(raw_bounds) if isinstance(raw_bounds, list) else raw_bounds
        problems.append(f"bounds must list one box per frame ({count}), got {size!r}")
    elif not all(isinstance(b, list) and len(b) == 4 and all(map(is_int, b)) for b in raw_bounds):
        problems.append("bounds must be [xmin, ymin, xmax, ymax] integer boxes")
    else:
        bounds = np.asarray(raw_bounds, dtype=np.int32).reshape(-1, 4)
        bad = [
            i
            for i, (x0, y0, x1, y1) in enumerate(bounds.tolist())
            if not (0 <= x0 < x1 <= (width or x1) and 0 <= y0 < y1 <= (height or y1))
        ]
        if bad:
            problems.append(
                f"bounds of frames {bad[:10]} are empty or outside the {width}x{height} video"
            )

    opening = manifest.get("mouth_opening")
    if (
        not isinstance(opening, list)
        or len(opening) != count
        or not all(map(is_finite_number, opening))
    ):
        problems.append(f"mouth_opening must hold one finite number per frame ({count})")
        opening = [0.0] * count

    landmarks = np.zeros((count, 68, 2), np.float32)
    try:
        loaded = np.load(root / LANDMARKS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        problems.append(f"{LANDMARKS_FILE} is missing or unreadable: {exc}")
    else:
        if loaded.shape != (count, 68, 2) or loaded.dtype.kind != "f":
            problems.append(
                f"{LANDMARKS_FILE} must be float [{count}, 68, 2], got {loaded.dtype} "
                f"{list(loaded.shape)}"
            )
        else:
            landmarks = loaded.astype(np.float32, copy=False)

    crops_dir = root / CROPS_DIR
    missing = [i for i in range(count) if not (crops_dir / crop_filename(i)).is_file()]
    if missing:
        problems.append(f"{len(missing)} crop(s) missing from {CROPS_DIR}/, first {missing[:5]}")

    speech_path = root / SPEECH_FILE
    samples = check_wav(speech_path, "", problems, SAMPLE_RATE)
    if samples is not None and abs(samples - count * SAMPLES_PER_FRAME) > SAMPLES_PER_FRAME:
        problems.append(
            f"{SPEECH_FILE} lasts {samples / SAMPLE_RATE:.3f} s, but {count} frames need "
            f"{count / FPS:.3f} s"
        )

    interpolated = manifest.get("interpolated_frames", [])
    if not isinstance(interpolated, list) or not all(
        is_int(i) and 0 <= i < count for i in interpolated
    ):
        problems.append("interpolated_frames must list frame indices")
        interpolated = []

    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise InvalidInput(f"dataset {root} is not valid:\n{listed}")
    for array in (bounds, landmarks):
        array.setflags(write=False)
    openings = np.asarray(opening, dtype=np.float32)
    openings.setflags(write=False)
    return AvatarDataset(
        path=root,
        name=str(name),
        fps=FPS,
        frame_count=count,
        video_path=video_path,
        video_width=width,
        video_height=height,
        bounds=bounds,
        mouth_opening=openings,
        landmarks=landmarks,
        speech_path=speech_path,
        crops_dir=crops_dir,
        interpolated_frames=list(interpolated),
        dropped=manifest.get("dropped"),
        source=manifest.get("source"),
        manifest=manifest,
    )


def _or_zero(value: Any) -> int:
    """A checked integer field, or 0 in place of a bad one (whose problem is recorded)."""
    return 0 if value is MISSING else int(value)
