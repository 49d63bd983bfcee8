"""Recording an avatar session to MP4 (H.264 and AAC), off the hot path.

A ``Recording`` takes whole frames, each with the 40 ms of audio it is shown with, in the order
they are shown. A writer thread of its own encodes them, so whoever adds frames never waits on
the encoder. Frame ``k`` of the file starts at ``40k`` ms and so does its audio: sound and mouth
are as aligned in the file as they were when they were added. The queue between the two is
bounded: a writer that falls behind drops frames (counted in ``dropped``). A dropped frame's
audio becomes silence in its place, so what follows stays in sync.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

import av
import numpy as np

from lipstream.audio.pcm import av_frame
from lipstream.audio.timeline import FPS
from lipstream.errors import InvalidInput

log = logging.getLogger(__name__)

DEFAULT_QUEUE_FRAMES = 125  # 5 s of frames waiting for the encoder


class Recording:
    """An MP4 being written: ``add`` frames and their audio, then ``close``."""

    def __init__(
        self,
        path: str | Path,
        *,
        sample_rate: int = 24000,
        max_queued: int = DEFAULT_QUEUE_FRAMES,
        crf: int = 23,
    ) -> None:
        """``sample_rate``: the audio's (PCM16 mono); it must hold a whole number of samples
        per 40 ms frame. ``crf``: H.264 quality (lower is better and bigger)."""
        if sample_rate % FPS:
            raise InvalidInput(f"the sample rate must be a multiple of {FPS}, got {sample_rate}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate // FPS
        self.crf = crf
        self.frames_written = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._next = 0
        self._queue: queue.Queue[tuple[int, np.ndarray, bytes] | None] = queue.Queue(max_queued)
        self._thread = threading.Thread(target=self._write, name="recording", daemon=True)
        self._thread.start()
        self._closed = False

    def add(self, image: np.ndarray, audio: bytes = b"") -> bool:
        """Queue the next frame (RGB uint8 [H, W, 3], every frame the same size) and its audio
        (PCM16 mono, at most 40 ms; less is padded with silence). False when it was dropped:
        the writer is behind, or stopped on an error (``error``)."""
        if self._closed:
            raise InvalidInput(f"the recording {self.path} is closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidInput(f"a frame is RGB uint8 [H, W, 3], got {image.dtype} {image.shape}")
        if len(audio) > 2 * self.frame_samples or len(audio) % 2:
            raise InvalidInput(
                f"a frame's audio is at most {self.frame_samples} PCM16 samples, "
                f"got {len(audio)} bytes"
            )
        index, self._next = self._next, self._next + 1
        if self.error is not None:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait((index, image, audio))
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self, timeout: float = 60.0) -> Path:
        """Write what is queued and finish the file. Raises what stopped the writer."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the recording {self.path} was not finished in {timeout} s")
        if self.error is not None:
            raise self.error
        return self.path

    # ---------------------------------------------------------------------------------------
    # the writer thread

    def _write(self) -> None:
        container = None
        drained = False
        try:
            first = self._queue.get()
            if first is None:
                return
            height, width = first[1].shape[:2]
            container = av.open(str(self.path), "w")
            video = container.add_stream("libx264", rate=FPS)
            video.width, video.height = width - width % 2, height - height % 2
            video.pix_fmt = "yuv420p"
            video.options = {"crf": str(self.crf), "preset": "veryfast"}
            sound = container.add_stream("aac", rate=self.sample_rate)
            sound.layout = "mono"
            fifo = av.AudioFifo()
            written_audio = 0  # frames whose audio went in
            item: tuple[int, np.ndarray, bytes] | None = first
            while item is not None:
                index, image, audio = item
                while written_audio <= index:  # silence for dropped frames' audio
                    data = audio if written_audio == index else b""
                    self._add_audio(fifo, data, written_audio)
                    written_audio += 1
                self._encode_audio(container, sound, fifo, final=False)
                picture = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image[: video.height, : video.width]), format="rgb24"
                )
                picture.pts = index  # in 1/25 s, the stream's rate
                container.mux(video.encode(picture))
                self.frames_written += 1
                item = self._queue.get()
            drained = True
            self._encode_audio(container, sound, fifo, final=True)
            container.mux(video.encode(None))
        except BaseException as exc:  # kept for close() to raise; the caller is never stopped
            log.warning("recording %s failed: %s", self.path, exc)
            self.error = exc
            while not drained and self._queue.get() is not None:  # let close() through
                pass
        finally:
            if container is not None:
                container.close()

    def _add_audio(self, fifo: av.AudioFifo, data: bytes, index: int) -> None:
        samples = np.zeros(self.frame_samples, np.int16)
        given = np.frombuffer(data, "<i2")
        samples[: len(given)] = given
        fifo.write(av_frame(samples, self.sample_rate, index * self.frame_samples))

    def _encode_audio(self, container, sound, fifo: av.AudioFifo, *, final: bool) -> None:
        size = sound.codec_context.frame_size or 1024
        while fifo.samples >= size or (final and fifo.samples):
            frame = fifo.read(min(size, fifo.samples))
            container.mux(sound.encode(frame))
        if final:
            container.mux(sound.encode(None))
