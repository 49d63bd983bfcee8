"""Reading and writing video: the avatar's full-body video, the file browsers play."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from lipstream.audio.pcm import AudioChunk
from lipstream.audio.timeline import FPS
from lipstream.errors import InvalidInput


class Mp4Writer:
    """Writes BGR frames as H.264 yuv420p MP4, tagged BT.709 as browsers expect."""

    def __init__(
        self, path: Path, width: int, height: int, fps: int = FPS, audio_rate: int | None = None
    ):
        self.width, self.height = width, height
        # yuv420p needs even sides: pad right/bottom so pixel coordinates stay unchanged.
        self.padded = (width + width % 2, height + height % 2)
        # The format is for browsers, which play H.264; MPEG-4 part 2 is a last resort for
        # FFmpeg builds without libx264.
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.container = av.open(str(path), "w", options={"movflags": "+faststart"})
        stream = self.container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = self.padded
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            # crf 18 is close to visually lossless: the pasted mouth must not stand out.
            stream.options = {"crf": "18", "preset": "medium"}
        else:
            stream.bit_rate = 8_000_000
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 1, 1, 1, 1
        self.stream = stream
        self.count = 0
        # Streams must all exist before the first packet is written.
        self.audio_stream = None
        if audio_rate is not None:
            audio_stream = self.container.add_stream("aac", rate=audio_rate)
            assert isinstance(audio_stream, av.AudioStream)
            audio_stream.layout = "mono"
            self.audio_stream = audio_stream

    def write(self, frame: np.ndarray) -> None:
        pad_w, pad_h = self.padded[0] - self.width, self.padded[1] - self.height
        if pad_w or pad_h:
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(
            format="yuv420p", dst_colorspace=av.video.reformatter.Colorspace.ITU709
        )
        vf.pts = self.count
        self.container.mux(self.stream.encode(vf))
        self.count += 1

    def write_audio(self, audio: AudioChunk) -> None:
        """Encode ``audio`` as the AAC sound track (made with ``audio_rate``), from time 0."""
        if self.audio_stream is None or audio.sample_rate != self.audio_stream.rate:
            raise InvalidInput("this writer was not made for audio at this sample rate")
        frame = av.AudioFrame.from_ndarray(
            audio.samples.reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = audio.sample_rate
        frame.pts = 0
        for out in av.AudioResampler(format="fltp", layout="mono").resample(frame):
            self.container.mux(self.audio_stream.encode(out))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))
        if self.audio_stream is not None:
            self.container.mux(self.audio_stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        # The half-written file is deleted with its folder; a close error changes nothing.
        with contextlib.suppress(av.FFmpegError, OSError):
            self.container.close()


def read_video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """The BGR frames of a video file's first video stream, in order."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InvalidInput(f"{path} has no video track")
            for frame in container.decode(container.streams.video[0]):
                yield frame.to_ndarray(format="bgr24")
    except av.FFmpegError as exc:
        raise InvalidInput(f"{path} is not a readable video file: {exc}") from None
