"""Rendering a portrait's clips: the talking training video and the silent video at rest.

``render_talking_video`` makes the photo speak varied English sentences with the offline voice
(``tts``): the phonemes' timings become mouth shapes (``visemes``), idle life is added
(``idle_motion``) and every frame is warped by a face rig (``face_rig``) into a 25 fps MP4 whose
sound is the speech. ``render_idle_video`` makes the portrait's own video: mouth closed, blinks
and sway, silence. Beside each clip go the mouth opening and the 68 landmarks of every frame,
the ground truth for judging a model trained on it.

The built-in sentences (``SENTENCES``) ship with the package in ``sentences.txt``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lipstream.audio.pcm import AudioChunk
from lipstream.audio.timeline import FPS, SAMPLE_RATE
from lipstream.avatar import tts, visemes
from lipstream.avatar.face_rig import FaceRig
from lipstream.avatar.idle_motion import IdleMotion, idle_motion
from lipstream.avatar.landmarks import mouth_opening
from lipstream.errors import InvalidInput
from lipstream.video import Mp4Writer


def _read_sentences() -> tuple[str, ...]:
    # One sentence a line; blank lines and '#' lines (notes about the file) are skipped.
    text = resources.files("lipstream.avatar").joinpath("sentences.txt").read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


SENTENCES: tuple[str, ...] = _read_sentences()
"""English sentences for training speech: varied, and rich in lip-visible sounds."""


@dataclass(frozen=True)
class TalkingVideo:
    """What ``render_talking_video`` wrote."""

    video: Path  # H.264 MP4 with the speech as its AAC track
    opening: Path  # float32 [frames]: the mouth opening each frame shows (landmarks measure)
    landmarks: Path  # float32 [frames, 68, 2]: where the 68 points are in each frame
    frames: int
    seconds: float


def talking_speech(
    sentences: Sequence[str],
    seconds: float,
    seed: int = 0,
    tail_sentences: Sequence[str] = (),
    tail_seconds: float = 0.0,
) -> tts.Speech:
    """At least ``seconds`` of speech: the sentences in shuffled order, with pauses between.

    With ``tail_sentences``, at least ``tail_seconds`` more follow made of those alone, so the
    end of the clip holds sentences heard nowhere before it (a fair held-out test).
    """
    if not sentences:
        raise InvalidInput("at least one sentence is needed to make the avatar talk")
    if not 0 < seconds <= 3600:
        raise InvalidInput(f"seconds must be within (0, 3600], got {seconds}")
    if tail_seconds and not tail_sentences:
        raise InvalidInput("tail_seconds needs tail_sentences to speak")
    rng = np.random.default_rng(seed)
    rate = tts.sample_rate()
    # Start and end in silence so the first and last frames show the mouth at rest.
    parts = [tts.silence(0.6, rate)]
    for pool, target in ((sentences, seconds), (tail_sentences, seconds + tail_seconds)):
        total = sum(p.duration for p in parts)
        order: list[str] = []
        while total < target:
            if not order:
                order = [pool[i] for i in rng.permutation(len(pool))]
            speech = tts.synthesize(order.pop(), length_scale=float(rng.uniform(0.92, 1.12)))
            pause = tts.silence(float(rng.uniform(0.35, 1.0)), rate)
            parts += [speech, pause]
            total += speech.duration + pause.duration
    return tts.concatenate(parts)


def render_talking_video(
    photo: np.ndarray,
    points68: np.ndarray,
    out_path: str | Path,
    sentences: Sequence[str] = SENTENCES,
    seconds: float = 180.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    tail_sentences: Sequence[str] = (),
    tail_seconds: float = 0.0,
) -> TalkingVideo:
    """Make ``photo`` speak for about ``seconds`` and write it as a 25 fps MP4 with sound.

    Beside ``out_path`` (``talk.mp4``) go ``talk.opening.npy``, the mouth opening of every frame
    as ``lipstream.avatar.landmarks.mouth_opening`` measures it on the moved landmarks (the
    ground truth for judging a model trained on the video), and ``talk.landmarks.npy``.
    ``progress(done, total)`` is called after each frame. ``tail_sentences`` and
    ``tail_seconds`` end the clip with sentences spoken nowhere before (see ``talking_speech``).
    """
    out_path = Path(out_path)
    rig = FaceRig.build(photo, points68)  # fail on a bad photo before spending time on speech
    speech = talking_speech(sentences, seconds, seed, tail_sentences, tail_seconds)
    rate = speech.audio.sample_rate
    n_frames = visemes.frame_count(speech.duration)
    # The sound is padded to exactly n_frames * 40 ms, so picture and sound end together.
    samples = np.zeros(round(n_frames * rate / FPS), np.int16)
    samples[: len(speech.audio)] = speech.audio.samples[: len(samples)]
    audio = AudioChunk(samples, rate)

    track = visemes.mouth_track(speech.phonemes, n_frames)
    idle = idle_motion(n_frames, visemes.opening(track), seed=seed)
    return _render_clip(rig, track, idle, audio, out_path, progress)


def render_idle_video(
    photo: np.ndarray, points68: np.ndarray, out_path: str | Path, seconds: float = 10.0, seed=0
) -> TalkingVideo:
    """The portrait at rest (mouth closed) with blinks and head sway: the avatar's own video.

    It is what the browser plays while nobody speaks, and the frames the model pastes mouths on.
    """
    if not 0 < seconds <= 600:
        raise InvalidInput(f"seconds must be within (0, 600], got {seconds}")
    rig = FaceRig.build(photo, points68)
    n_frames = visemes.frame_count(seconds)
    track = np.tile(np.asarray(visemes.REST, np.float32), (n_frames, 1))
    # Any rate works for a silent track; the model's 16 kHz is cheap to encode.
    audio = AudioChunk(np.zeros(n_frames * SAMPLE_RATE // FPS, np.int16), SAMPLE_RATE)
    return _render_clip(rig, track, idle_motion(n_frames, seed=seed), audio, Path(out_path), None)


def _render_clip(
    rig: FaceRig,
    track: np.ndarray,
    idle: IdleMotion,
    audio: AudioChunk,
    out_path: Path,
    progress: Callable[[int, int], None] | None,
) -> TalkingVideo:
    n_frames = len(track)
    height, width = rig.photo.shape[:2]
    opening = np.zeros(n_frames, np.float32)
    landmarks = np.zeros((n_frames, 68, 2), np.float32)
    writer = Mp4Writer(out_path, width, height, FPS, audio_rate=audio.sample_rate)
    try:
        for k in range(n_frames):
            frame, points = rig.render(idle.pose(k, track[k]))
            writer.write(frame)
            landmarks[k] = points
            opening[k] = mouth_opening(points)
            if progress is not None:
                progress(k + 1, n_frames)
        writer.write_audio(audio)
        writer.close()
    except BaseException:
        writer.abort()
        out_path.unlink(missing_ok=True)
        raise
    stem = out_path.with_suffix("")
    opening_path = stem.with_name(stem.name + ".opening.npy")
    landmarks_path = stem.with_name(stem.name + ".landmarks.npy")
    np.save(opening_path, opening)
    np.save(landmarks_path, landmarks)
    return TalkingVideo(out_path, opening_path, landmarks_path, n_frames, n_frames / FPS)
