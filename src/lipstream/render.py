"""Offline lip sync: an audio file and a model package in, a talking avatar video out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from lipstream.audio.features import offline_features
from lipstream.audio.files import read_audio_file
from lipstream.audio.pcm import AudioChunk
from lipstream.audio.resample import resample
from lipstream.audio.timeline import SAMPLE_RATE
from lipstream.compositor import Compositor, FrameCache
from lipstream.model.engine import RUNTIME_CHOICES, OpenedModel, open_model
from lipstream.schedule import pingpong_frame_id
from lipstream.video import Mp4Writer

BATCH = 5


def render(
    audio: str | Path | AudioChunk,
    model: OpenedModel,
    out_path: str | Path,
    progress: bool = False,
) -> int:
    """Write ``out_path`` (MP4 with the speech as sound) and return the number of frames.

    Each frame is composited as the console does (``lipstream.compositor``).

    ``audio`` is a file (any format FFmpeg reads) or speech already in memory.
    """
    if isinstance(audio, AudioChunk):
        speech = audio
        if speech.sample_rate != SAMPLE_RATE:
            speech = AudioChunk.from_float(
                resample(speech, speech.sample_rate, SAMPLE_RATE), SAMPLE_RATE
            )
    else:
        speech = read_audio_file(audio, sample_rate=SAMPLE_RATE)
    features = offline_features(speech, model.encoder, model.package.layout)
    pkg = model.package
    # its own cache: a one-off render keeps the decoded video no longer than it needs it
    compositor = Compositor(pkg, cache=FrameCache())
    writer = Mp4Writer(
        Path(out_path), compositor.width, compositor.height, pkg.fps, audio_rate=SAMPLE_RATE
    )
    try:
        for start in tqdm(
            range(0, len(features), BATCH), desc="render", unit="batch", disable=not progress
        ):
            ks = range(start, min(start + BATCH, len(features)))
            ids = [pingpong_frame_id(k, pkg.frame_count) for k in ks]
            mouths = model.generator.generate(ids, features[start : start + len(ids)])
            for frame_id, mouth in zip(ids, mouths, strict=True):
                writer.write(compositor.compose(frame_id, mouth))
        writer.write_audio(speech)
        writer.close()
    except BaseException:
        writer.abort()
        Path(out_path).unlink(missing_ok=True)
        raise
    return len(features)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``render`` subcommand."""
    p = subparsers.add_parser("render", help="lip-sync an audio file into an avatar video")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "audio", type=Path, nargs="?", help="speech (wav, mp3, ogg, or any video with sound)"
    )
    source.add_argument("--text", help="say this instead, with the offline voice")
    p.add_argument("--model", required=True, type=Path, help="model package folder")
    p.add_argument("-o", "--out", required=True, type=Path, help="output .mp4")
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=_cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    model = open_model(args.model, args.runtime, args.device)
    audio: Path | AudioChunk = args.audio
    if args.text is not None:
        from lipstream.avatar.tts import synthesize  # names the packages missing, if any

        audio = synthesize(args.text).audio
    count = render(audio, model, args.out, progress=sys.stderr.isatty())
    print(f"wrote {args.out}: {count} frames ({count / model.package.fps:.2f} s), {model.runtime}")
    return 0
