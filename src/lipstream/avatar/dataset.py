"""Turning a talking-head video into a training dataset, and reading one back.

``build_dataset`` decodes the video (any container and codec FFmpeg reads), takes one frame per
40 ms by timestamp, finds the face on every frame, derives steady crop boxes and writes the
dataset folder described in docs/avatar-builder.md. The folder is written beside its destination
under a hidden name and moved into place when complete, so a half-built dataset never appears.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import av
import numpy as np
import simplejpeg
from scipy.signal import savgol_filter
from tqdm import tqdm

from lipstream.audio.files import write_wav
from lipstream.audio.pcm import AudioChunk, float_to_pcm16
from lipstream.audio.resample import resample
from lipstream.audio.timeline import SAMPLE_RATE
from lipstream.avatar.landmarks import FaceLandmarker, mouth_opening
from lipstream.errors import InvalidInput
from lipstream.geometry import CROP_SIZE, CropBox, crop_frame, face68_square, fit_square
from lipstream.model.package import JPEG_QUALITY, check_name, crop_filename
from lipstream.video import Mp4Writer

FORMAT = "lipstream-dataset"
FORMAT_VERSION = 1
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
MANIFEST = "dataset.json"
CROPS_DIR = "crops"
VIDEO_FILE = "video.mp4"
SPEECH_FILE = "speech.wav"
LANDMARKS_FILE = "landmarks.npy"

MAX_GAP_FRAMES = 12
"""Longest run of faceless frames (inside the video) bridged by interpolation: about 0.5 s."""

# Savitzky-Golay windows (frames): the centre follows head motion within ~0.4 s, the size
# (which changes only with the distance to the camera) is held steadier.
CENTRE_WINDOW = 11
SIZE_WINDOW = 25
# A jump of the face centre by this fraction of the box side between two frames is a cut (or a
# different face): the smoothing restarts there instead of blending two places.
CUT_FRACTION = 0.35

# Half a microsecond of slack when comparing frame times, which are rounded to their time base.
_EPS = 5e-7


# --------------------------------------------------------------------------------------------
# Decoding


def _open(video: Path) -> Any:
    if not video.is_file():
        raise InvalidInput(f"video file not found: {video}")
    try:
        return av.open(str(video))
    except av.FFmpegError as exc:
        raise InvalidInput(f"{video} is not a readable video file: {exc}") from None


@dataclass
class _DecodeStats:
    bad_packets: int = 0


def _decode(container: Any, stream: Any, stats: _DecodeStats) -> Iterator[Any]:
    """Frames of one stream, skipping packets the decoder refuses (a damaged spot in a file)."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            stats.bad_packets += 1
            continue
        yield from frames


@dataclass(frozen=True)
class _VideoInfo:
    width: int
    height: int
    fps: float
    duration: float


def _probe(video: Path) -> _VideoInfo:
    """Check the file has video and audio tracks; size, frame rate and duration of the video."""
    with _open(video) as container:
        if not container.streams.video:
            raise InvalidInput(f"{video} has no video track")
        if not container.streams.audio:
            raise InvalidInput(f"{video} has no audio track: the dataset needs the speech")
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        return _VideoInfo(stream.width, stream.height, rate, duration)


def _upright(frame: Any) -> np.ndarray:
    image = frame.to_ndarray(format="bgr24")
    # Phones store portrait video sideways with a rotation tag; PyAV gives the counterclockwise
    # angle the picture must be turned by to be shown as recorded.
    turns = round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def frames_at_25fps(
    video: str | Path, max_frames: int | None = None, stats: _DecodeStats | None = None
) -> Iterator[np.ndarray]:
    """The video's BGR frames resampled to 25 fps by timestamp.

    Output frame ``k`` is the source frame on screen at ``t = k / 25`` s after the first frame:
    the last one whose presentation time is at or before ``t``. The last source frame stays on
    screen for its own duration, so the output ends where the video ends.
    """
    video = Path(video)
    stats = stats if stats is not None else _DecodeStats()
    limit = math.inf if max_frames is None else max_frames
    with _open(video) as container:
        if not container.streams.video:
            raise InvalidInput(f"{video} has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step = 1.0 / float(stream.average_rate) if stream.average_rate else 1.0 / FPS
        time_base = float(stream.time_base) if stream.time_base else 0.0
        t0: float | None = None
        shown: Any = None
        shown_image: np.ndarray | None = None
        shown_at = 0.0
        k = 0
        try:
            for index, frame in enumerate(_decode(container, stream, stats)):
                t = frame.time if frame.time is not None else index * step
                if t0 is None:
                    t0 = t
                t -= t0
                while shown is not None and k < limit and k / FPS < t - _EPS:
                    if shown_image is None:  # convert only frames that are used, once
                        shown_image = _upright(shown)
                    yield shown_image
                    k += 1
                if k >= limit:
                    return
                shown, shown_image, shown_at = frame, None, t
            if shown is None:
                return
            duration = getattr(shown, "duration", None)
            end = shown_at + (duration * time_base if duration and time_base else step)
            while k < limit and k / FPS < end - _EPS:
                if shown_image is None:
                    shown_image = _upright(shown)
                yield shown_image
                k += 1
        except av.FFmpegError as exc:
            raise InvalidInput(f"{video} is not a readable video file: {exc}") from None


def _first_video_time(video: Path) -> float:
    """When the first picture is shown: time 0 of the dataset, for the audio as for the frames."""
    with _open(video) as container:
        if not container.streams.video:
            return 0.0
        for frame in _decode(container, container.streams.video[0], _DecodeStats()):
            return float(frame.time) if frame.time is not None else 0.0
    return 0.0


def read_audio_track(
    video: str | Path, max_seconds: float | None = None, stats: _DecodeStats | None = None
) -> AudioChunk:
    """The first audio track at 16 kHz mono, sample 0 at the time of the first video frame.

    Decoded frames are placed by their timestamps, so audio that starts late, a dropped packet or
    a track that starts before the picture keep their places against the frames.
    """
    video = Path(video)
    stats = stats if stats is not None else _DecodeStats()
    t0 = _first_video_time(video)
    with _open(video) as container:
        if not container.streams.audio:
            raise InvalidInput(f"{video} has no audio track: the dataset needs the speech")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        tolerance = rate // 1000  # a millisecond: timestamp rounding, not a real gap
        end = math.inf if max_seconds is None else max_seconds + 1.0
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts: list[tuple[int, np.ndarray]] = []
        cursor = 0
        try:
            for frame in _decode(container, stream, stats):
                start = cursor
                if frame.time is not None:
                    start = round((frame.time - t0) * rate)
                    if abs(start - cursor) <= tolerance:
                        start = cursor
                for out in mono.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    parts.append((start, samples))
                    start += len(samples)
                cursor = start
                if cursor / rate > end:
                    break
        except av.FFmpegError as exc:
            raise InvalidInput(f"{video}: the audio track cannot be decoded: {exc}") from None
    if not parts:
        raise InvalidInput(f"{video}: the audio track holds no decodable audio")
    length = max(start + len(samples) for start, samples in parts)
    signal = np.zeros(max(length, 0), dtype=np.float32)
    for start, samples in parts:
        lo = max(start, 0)  # audio before the first picture is cut off
        if start + len(samples) > lo:
            signal[lo : start + len(samples)] = samples[lo - start :]
    resampled = resample(signal, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else signal
    return AudioChunk(float_to_pcm16(np.clip(resampled, -1.0, 1.0)), SAMPLE_RATE)


# --------------------------------------------------------------------------------------------
# Landmarks over time: gaps, trimming and smoothing


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame landmarks after trimming faceless ends and bridging short gaps."""

    landmarks: np.ndarray  # float32 [N, 68, 2], frames first..last of the source
    first: int  # index of the first kept frame in the 25 fps video
    dropped_leading: int
    dropped_trailing: int
    interpolated: list[int]  # indices (in the kept frames) whose landmarks were interpolated


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _describe(run: tuple[int, int]) -> str:
    a, b = run
    frames = f"frame {a}" if a == b else f"frames {a}-{b}"
    return f"{frames} ({a / FPS:.2f}-{(b + 1) / FPS:.2f} s)"


def resolve_faces(
    points: list[np.ndarray | None], video: str | Path, max_gap: int = MAX_GAP_FRAMES
) -> FaceTrack:
    """Drop faceless frames at the ends and interpolate short faceless gaps in between.

    Raises InvalidInput naming the frames when no frame has a face or a gap is longer than
    ``max_gap`` frames (a pasted mouth would be guessed over too long a stretch).
    """
    found = [i for i, p in enumerate(points) if p is not None]
    if not found:
        raise InvalidInput(f"no face found in {video}")
    first, last = found[0], found[-1]
    missing = [i for i in range(first, last + 1) if points[i] is None]
    runs = _runs(missing)
    long = [run for run in runs if run[1] - run[0] + 1 > max_gap]
    if long:
        listed = ", ".join(_describe(run) for run in long[:10])
        more = f" and {len(long) - 10} more" if len(long) > 10 else ""
        raise InvalidInput(
            f"no face found in {video} in {listed}{more}; gaps of up to {max_gap} frames are "
            "bridged, longer ones are not: cut those parts out of the video or keep the face "
            "in view"
        )
    kept = [np.asarray(p, dtype=np.float32) if p is not None else None for p in points]
    for a, b in runs:
        before, after = kept[a - 1], kept[b + 1]
        assert before is not None and after is not None
        for i in range(a, b + 1):
            w = (i - a + 1) / (b - a + 2)
            kept[i] = (1 - w) * before + w * after
    landmarks = np.stack([p for p in kept[first : last + 1] if p is not None])
    return FaceTrack(
        landmarks=landmarks.astype(np.float32),
        first=first,
        dropped_leading=first,
        dropped_trailing=len(points) - 1 - last,
        interpolated=[i - first for i in missing],
    )


def _savgol(values: np.ndarray, window: int, order: int) -> np.ndarray:
    window = min(window, len(values) - (1 - len(values) % 2))  # odd, at most the length
    if window <= order:
        return values
    return savgol_filter(values, window, order, mode="nearest")


def smooth_squares(squares: np.ndarray) -> np.ndarray:
    """Steady boxes: Savitzky-Golay smoothing of ``[xmin, ymin, side]`` rows over time.

    The box centre and side are smoothed separately (the side more), and the smoothing restarts
    at cuts, where the face jumps, so boxes on either side of a cut are not blended.
    """
    squares = np.asarray(squares, dtype=np.float64)
    centres = squares[:, :2] + squares[:, 2:3] / 2
    sides = squares[:, 2].copy()
    jumps = np.linalg.norm(np.diff(centres, axis=0), axis=1) > CUT_FRACTION * sides[1:]
    bounds = [0, *(np.flatnonzero(jumps) + 1).tolist(), len(squares)]
    out = np.empty_like(squares)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        cx = _savgol(centres[lo:hi, 0], CENTRE_WINDOW, 2)
        cy = _savgol(centres[lo:hi, 1], CENTRE_WINDOW, 2)
        side = _savgol(sides[lo:hi], SIZE_WINDOW, 1)
        out[lo:hi] = np.stack([cx - side / 2, cy - side / 2, side], axis=1)
    return out


def steady_boxes(landmarks: np.ndarray, frame_width: int, frame_height: int) -> list[CropBox]:
    """The crop box of every frame from its 68 landmarks, smoothed over time, inside the frame."""
    squares = np.array([face68_square(p) for p in landmarks])
    return [
        fit_square(xmin, ymin, side, frame_width, frame_height)
        for xmin, ymin, side in smooth_squares(squares).tolist()
    ]


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
    info = _probe(video)
    max_frames = None if max_seconds is None else math.ceil(max_seconds * FPS)
    expected = math.floor(info.duration * FPS) if info.duration else None
    if expected is not None and max_frames is not None:
        expected = min(expected, max_frames)

    notes: list[str] = []
    audio_stats = _DecodeStats()
    audio = read_audio_track(video, max_seconds, audio_stats)
    if audio_stats.bad_packets:
        notes.append(f"{audio_stats.bad_packets} undecodable audio packet(s) replaced by silence")

    # Pass 1: landmarks on every frame. Frames are decoded again for writing rather than kept:
    # an hour of HD video does not fit in memory.
    landmarker = FaceLandmarker()
    points: list[np.ndarray | None] = []
    size: tuple[int, int] | None = None
    video_stats = _DecodeStats()
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

    datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=datasets_dir))
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
                    crop = crop_frame(frame, boxes[i])
                    data = simplejpeg.encode_jpeg(
                        crop, quality=JPEG_QUALITY, colorspace="BGR", colorsubsampling="420"
                    )
                    (tmp / CROPS_DIR / crop_filename(i)).write_bytes(data)
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
        _move_into_place(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return destination


def _move_into_place(tmp: Path, destination: Path) -> None:
    old: Path | None = None
    if destination.exists():
        # Keep the old dataset until the new one is in place, so a failure loses neither.
        old = destination.with_name(f".{destination.name}.{tmp.name}.old")
        destination.rename(old)
    try:
        tmp.rename(destination)
    except BaseException:
        if old is not None:
            old.rename(destination)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


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
    name = manifest.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, got {name!r}")
    if manifest.get("fps") != FPS:
        problems.append(f"fps must be {FPS}, got {manifest.get('fps')!r}")
    raw_count = manifest.get("frame_count")
    count: int = raw_count if _int(raw_count) and raw_count >= 1 else 0
    if not count:
        problems.append(f"frame_count must be a positive integer, got {raw_count!r}")
    video = manifest.get("video")
    width: int = 0
    height: int = 0
    video_path = root / VIDEO_FILE
    if not isinstance(video, dict):
        problems.append("video must be {file, width, height}")
    else:
        raw_w, raw_h = video.get("width"), video.get("height")
        if _int(raw_w) and _int(raw_h) and raw_w > 0 and raw_h > 0:
            width, height = raw_w, raw_h
        else:
            problems.append(f"video width/height must be positive integers, got {raw_w}x{raw_h}")
        file = video.get("file")
        if not isinstance(file, str) or Path(file).name != file:
            problems.append(f"video file must be a file name inside the dataset, got {file!r}")
        else:
            video_path = root / file
    if not video_path.is_file():
        problems.append(f"video file {video_path.name} is missing")

    bounds = np.zeros((0, 4), np.int32)
    raw_bounds = manifest.get("bounds")
    if not isinstance(raw_bounds, list) or len(raw_bounds) != count:
        size = len(raw_bounds) if isinstance(raw_bounds, list) else raw_bounds
        problems.append(f"bounds must list one box per frame ({count}), got {size!r}")
    elif not all(isinstance(b, list) and len(b) == 4 and all(map(_int, b)) for b in raw_bounds):
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
    if not isinstance(opening, list) or len(opening) != count or not all(map(_number, opening)):
        problems.append(f"mouth_opening must hold one finite number per frame ({count})")
        opening = [0.0] * count

    landmarks = np.zeros((count, 68, 2), np.float32)
    landmarks_path = root / LANDMARKS_FILE
    try:
        loaded = np.load(landmarks_path, allow_pickle=False)
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
    problems += _check_speech(speech_path, count)

    interpolated = manifest.get("interpolated_frames", [])
    if not isinstance(interpolated, list) or not all(
        _int(i) and 0 <= i < count for i in interpolated
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
        frame_count=int(count),
        video_path=video_path,
        video_width=int(width),
        video_height=int(height),
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


def _check_speech(path: Path, count: int) -> list[str]:
    if not path.is_file():
        return [f"{SPEECH_FILE} is missing"]
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.getnframes()
    except (OSError, EOFError, wave.Error) as exc:
        return [f"{SPEECH_FILE} is not a readable WAV file: {exc}"]
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        return [
            f"{SPEECH_FILE} must be {SAMPLE_RATE} Hz mono 16-bit, got {rate} Hz, "
            f"{channels} channel(s), {8 * width}-bit"
        ]
    if abs(frames - count * SAMPLES_PER_FRAME) > SAMPLES_PER_FRAME:
        return [
            f"{SPEECH_FILE} lasts {frames / SAMPLE_RATE:.3f} s, but {count} frames need "
            f"{count / FPS:.3f} s"
        ]
    return []
