"""The feature timeline: audio -> one [32, 16, 16] generator input per frame.

An encoder is any callable ``encode(windows: float32 [N, 1, 80, 16]) -> float32 [N, 512]``.
Encoder window j reads 16 mel frames from ``layout.window_start(j)`` on, as [80, 16] (mel frames
before the stream's start are silence); frame k takes the 16 rows ``layout.rows(k)`` (zero rows
before the start), reshaped row-major [16, 512] -> [32, 16, 16]. The layout is a model
package's (``lipstream.audio.timeline.FeatureLayout``; SyncTalk_2D's by default).

Streams are continued by silence at their end, so a stream of N samples at 16 kHz has
ceil(N/640) frames and the last frames never need SyncTalk_2D's "shift the last window back"
rule. ``offline_features`` and ``StreamingFeatureExtractor`` give the same frames.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.mel import N_MELS, SILENCE, StreamingMel, mel_frames, preemphasize
from lipstream.audio.pcm import AudioChunk, as_float_samples, validate_sample_rate
from lipstream.audio.resample import StreamingResampler
from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.errors import InvalidInput

if TYPE_CHECKING:
    import torch

Encoder = Callable[[np.ndarray], np.ndarray]
_ENCODE_BATCH = 256  # windows per encoder call in offline use: bounds memory on long audio


class FeatureFrame(NamedTuple):
    """The generator's audio input for one video frame: ``(frame_index, features[32, 16, 16])``."""

    frame_index: int
    features: np.ndarray


def torch_encoder(module: torch.nn.Module) -> Encoder:
    """Wrap a torch module (e.g. ``AudioEncoder``) as an encoder; puts it in eval mode."""
    import torch  # only when a torch module is used: serving runs without torch

    module.eval()

    def encode(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        return out.reshape(len(windows), -1).numpy()

    return encode


def encoder_windows(mel: np.ndarray, first_frame: int, starts: list[int]) -> np.ndarray:
    """Encoder inputs float32 [N, 1, 80, 16] for windows starting at global mel frames ``starts``.

    ``mel`` is [80, M] holding global mel frames ``first_frame .. first_frame + M - 1``; a
    window starting before mel frame 0 reads silence there.
    """
    out = np.empty((len(starts), 1, N_MELS, tl.MEL_WINDOW_FRAMES), dtype=np.float32)
    for i, start in enumerate(starts):
        before = min(max(-start, 0), tl.MEL_WINDOW_FRAMES)  # columns before the stream
        out[i, 0, :, :before] = SILENCE
        s = start + before - first_frame
        out[i, 0, :, before:] = mel[:, s : s + tl.MEL_WINDOW_FRAMES - before]
    return out


def _encode(encode: Encoder, windows: np.ndarray) -> np.ndarray:
    if not len(windows):
        return np.zeros((0, tl.FEATURE_SIZE), dtype=np.float32)
    out = np.asarray(encode(windows), dtype=np.float32)
    if out.shape != (len(windows), tl.FEATURE_SIZE):
        raise InvalidInput(
            f"the audio encoder returned shape {out.shape} for {len(windows)} windows; "
            f"expected ({len(windows)}, {tl.FEATURE_SIZE})"
        )
    return out


def frame_features(
    encoded: np.ndarray, first_window: int, frame: int, layout: FeatureLayout = SYNCTALK2D
) -> np.ndarray:
    """Generator input float32 [32, 16, 16] of ``frame`` from encoder outputs.

    ``encoded`` holds E[first_window ..]; it must reach ``layout.last_window(frame)`` and start
    no later than ``layout.first_window(frame)``.
    """
    rows = np.zeros((tl.WINDOW_ROWS, tl.FEATURE_SIZE), dtype=np.float32)
    for i, window in enumerate(layout.rows(frame)):
        if window >= 0:  # rows before the stream's start stay zero
            rows[i] = encoded[window - first_window]
    return rows.reshape(tl.FRAME_FEATURE_SHAPE)


def offline_features(
    pcm16k: AudioChunk | np.ndarray, encode: Encoder, layout: FeatureLayout = SYNCTALK2D
) -> np.ndarray:
    """Generator inputs for a whole 16 kHz signal: float32 [ceil(N/640), 32, 16, 16]."""
    if isinstance(pcm16k, AudioChunk) and pcm16k.sample_rate != tl.SAMPLE_RATE:
        raise InvalidInput(
            f"offline_features takes 16000 Hz audio, got {pcm16k.sample_rate} Hz; resample first"
        )
    x = as_float_samples(pcm16k)
    n_frames = tl.frame_count(len(x))
    if n_frames == 0:
        return np.zeros((0, *tl.FRAME_FEATURE_SHAPE), dtype=np.float32)
    # the same streaming mel, fed at once: the signal continued by silence as far as needed
    needed = layout.samples_needed(n_frames - 1)
    x = np.concatenate([x[:needed], np.zeros(max(needed - len(x), 0))])
    mel = StreamingMel().push(x)
    n_windows = layout.last_window(n_frames - 1) + 1
    starts = [layout.window_start(j) for j in range(n_windows)]
    encoded = np.concatenate(
        [
            _encode(encode, encoder_windows(mel, 0, starts[b : b + _ENCODE_BATCH]))
            for b in range(0, n_windows, _ENCODE_BATCH)
        ]
    )
    return np.stack([frame_features(encoded, 0, k, layout) for k in range(n_frames)])


class StreamingFeatureExtractor:
    """Generator inputs of an audio stream, each emitted as soon as its lookahead has arrived.

    ``push`` returns the frames that became ready (frame k once ``layout.samples_needed(k)``
    16 kHz samples exist); ``flush`` ends the stream, continues it with silence and returns the
    rest, ``ceil(N/640)`` frames in all for N samples at 16 kHz. Frame indices count from the
    start of the current stream: after ``flush`` or ``reset`` they start at 0 again, and a
    caller with a session-wide frame counter adds its own offset.

    With ``sample_rate`` other than 16000 the input is resampled on the way in (adding
    ``resampler_latency_s`` of lookahead); frames are those of the resampled stream.
    Memory stays bounded: only the samples, mel frames and encoder rows the next frames still
    need are kept.
    """

    def __init__(
        self,
        encode: Encoder,
        sample_rate: int = tl.SAMPLE_RATE,
        layout: FeatureLayout = SYNCTALK2D,
    ) -> None:
        self._encode = encode
        self.layout = layout
        self.sample_rate = validate_sample_rate(sample_rate)
        self._resampler = (
            StreamingResampler(self.sample_rate, tl.SAMPLE_RATE)
            if self.sample_rate != tl.SAMPLE_RATE
            else None
        )
        self._mel = StreamingMel()
        self.reset()

    @property
    def resampler_latency_s(self) -> float:
        """Extra lookahead added by resampling the input (0 at 16 kHz)."""
        return self._resampler.latency_s if self._resampler else 0.0

    @property
    def samples_received(self) -> int:
        """16 kHz samples of the current stream so far (after resampling)."""
        return self._samples

    @property
    def next_frame(self) -> int:
        """Index of the next frame to be emitted."""
        return self._next_frame

    @property
    def held_bytes(self) -> int:
        """Bytes of audio, mel and feature history held now; bounded however long the stream."""
        held = self._mel.held_bytes + self._mel_buf.nbytes + self._encoded.nbytes
        return held + (self._resampler.held_bytes if self._resampler else 0)

    def reset(self) -> None:
        """Drop all buffered audio and state (barge-in); the next push starts frame 0."""
        if self._resampler:
            self._resampler.reset()
        self._mel.reset()
        self._samples = 0
        self._mel_buf = np.zeros((N_MELS, 0))
        self._mel_first = 0  # global index of self._mel_buf[:, 0]
        self._encoded = np.zeros((0, tl.FEATURE_SIZE), dtype=np.float32)
        self._encoded_first = 0  # global index of self._encoded[0]
        self._next_window = 0
        self._next_frame = 0

    def resume(self, frame: int, audio: np.ndarray, start_sample: int) -> list[FeatureFrame]:
        """Continue a stream at ``frame`` from a piece of it; return the frames now ready.

        ``audio`` (16 kHz, int16 or float) holds the stream's samples from ``start_sample`` on,
        which must reach back to what ``frame`` reads (``timeline.first_sample_needed``, or the
        stream start). The frames emitted from ``frame`` on equal those of the whole stream, so
        a stream moved to another extractor (another model, another service instance)
        continues where it was.
        """
        if self._resampler:
            raise InvalidInput("resume takes 16000 Hz audio: make the extractor at 16000 Hz")
        layout = self.layout
        oldest = max(layout.first_sample_needed(frame), 0) if frame >= 0 else -1
        if frame < 0 or not 0 <= start_sample <= oldest:
            raise InvalidInput(
                f"frame {frame} reads the stream from sample {oldest} on: the audio must start "
                f"at a sample from 0 to that one, not at {start_sample}"
            )
        x = as_float_samples(audio)
        self.reset()
        first_window = layout.first_window(frame)
        first_mel = max(layout.window_start(first_window), 0)
        # the mel's first sample: the one after the sample pre-emphasis reads before it
        first_sample = max(layout.first_sample_needed(frame) + 1, 0)
        if len(x) < first_sample - start_sample:
            raise InvalidInput(
                f"frame {frame} reads the stream from sample {first_sample} on, but the audio "
                f"given ends at sample {start_sample + len(x)}"
            )
        previous = x[first_sample - start_sample - 1] if first_sample > start_sample else 0.0
        self._mel.reset(first_mel, previous)
        self._mel_first = first_mel
        self._encoded_first = self._next_window = first_window
        self._next_frame = frame
        self._samples = start_sample + len(x)
        return self._feed(x[first_sample - start_sample :], last_frame=None)

    def push(self, audio: AudioChunk | np.ndarray) -> list[FeatureFrame]:
        """Feed audio (int16 PCM or float in [-1, 1], at ``sample_rate``); return ready frames."""
        if isinstance(audio, AudioChunk) and audio.sample_rate != self.sample_rate:
            raise InvalidInput(
                f"audio chunk is {audio.sample_rate} Hz but this extractor was made for "
                f"{self.sample_rate} Hz"
            )
        x = self._resampler.process(audio) if self._resampler else as_float_samples(audio)
        self._samples += len(x)
        return self._feed(x, last_frame=None)

    def flush(self) -> list[FeatureFrame]:
        """End the stream: pad with silence, return the remaining frames, and reset."""
        frames = []
        if self._resampler:
            tail = self._resampler.flush()
            self._samples += len(tail)
            frames += self._feed(tail, last_frame=None)
        n_frames = tl.frame_count(self._samples)
        if n_frames > self._next_frame:
            needed = self.layout.samples_needed(n_frames - 1)
            silence = np.zeros(max(needed - self._mel.samples_received, 0))
            frames += self._feed(silence, last_frame=n_frames - 1)
        self.reset()
        return frames

    def _feed(self, x: np.ndarray, last_frame: int | None) -> list[FeatureFrame]:
        mel = self._mel.push(x)
        if mel.shape[1]:
            self._mel_buf = np.concatenate([self._mel_buf, mel], axis=1)
        mel_end = self._mel_first + self._mel_buf.shape[1]

        layout = self.layout
        starts = []
        while layout.window_start(self._next_window) + tl.MEL_WINDOW_FRAMES <= mel_end:
            starts.append(layout.window_start(self._next_window))
            self._next_window += 1
        if starts:
            windows = encoder_windows(self._mel_buf, self._mel_first, starts)
            self._encoded = np.concatenate([self._encoded, _encode(self._encode, windows)])
            # mel frames before the next window's start are never read again
            drop = max(layout.window_start(self._next_window) - self._mel_first, 0)
            self._mel_buf = self._mel_buf[:, drop:]
            self._mel_first += drop

        frames = []
        k = self._next_frame
        while layout.last_window(k) < self._next_window and (last_frame is None or k <= last_frame):
            features = frame_features(self._encoded, self._encoded_first, k, layout)
            frames.append(FeatureFrame(k, features))
            k += 1
        self._next_frame = k
        keep = layout.first_window(k)  # the oldest window the next frame reads
        if keep > self._encoded_first:
            self._encoded = self._encoded[keep - self._encoded_first :]
            self._encoded_first = keep
        return frames


class CachedEncoder:
    """An encoder that remembers its recent outputs by the content of each mel window.

    A stateless service making a stream's frames a few at a time sees each encoder window
    again in up to 16 requests (a frame reads 16 feature rows); with this cache each window is
    encoded once, so a request of one frame costs one encoder window instead of sixteen.
    Thread-safe; at most ``max_windows`` outputs are kept (least recently used go first).
    """

    def __init__(self, encode: Encoder, max_windows: int = 8192) -> None:
        self._encode = encode
        self._max = max_windows
        self._outputs: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        keys = [hashlib.blake2b(w.tobytes(), digest_size=16).digest() for w in windows]
        out = np.empty((len(windows), tl.FEATURE_SIZE), dtype=np.float32)
        missing = []
        with self._lock:
            for i, key in enumerate(keys):
                found = self._outputs.get(key)
                if found is None:
                    missing.append(i)
                else:
                    self._outputs.move_to_end(key)
                    out[i] = found
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
        if missing:
            encoded = _encode(self._encode, windows[missing])
            out[missing] = encoded
            with self._lock:
                for i, row in zip(missing, encoded, strict=True):
                    self._outputs[keys[i]] = row
                while len(self._outputs) > self._max:
                    self._outputs.popitem(last=False)
        return out


def segment_features(
    pcm16k: AudioChunk | np.ndarray,
    start_sample: int,
    first_frame: int,
    count: int,
    encode: Encoder,
    layout: FeatureLayout = SYNCTALK2D,
) -> np.ndarray:
    """Generator inputs of frames ``first_frame ..`` from a stretch of one utterance's audio.

    ``pcm16k`` holds the utterance's 16 kHz samples from index ``start_sample`` on; samples
    before it (down to the utterance start) must not be needed, i.e. ``start_sample`` is at
    most ``max(0, layout.first_sample_needed(first_frame))``. Samples past its end are
    silence. The result, float32 [count, 32, 16, 16], equals the same frames of
    ``offline_features`` over the utterance, so a stateless service can make any frames of a
    stream from a bounded piece of it.
    """
    if count < 0 or first_frame < 0 or start_sample < 0:
        raise InvalidInput(
            f"frames and samples count from 0: got first_frame={first_frame}, count={count}, "
            f"start_sample={start_sample}"
        )
    if isinstance(pcm16k, AudioChunk) and pcm16k.sample_rate != tl.SAMPLE_RATE:
        raise InvalidInput(f"segment_features takes 16000 Hz audio, got {pcm16k.sample_rate} Hz")
    if count == 0:
        return np.zeros((0, *tl.FRAME_FEATURE_SHAPE), dtype=np.float32)
    oldest = max(layout.first_sample_needed(first_frame), 0)
    if start_sample > oldest:
        raise InvalidInput(
            f"frame {first_frame} needs audio from utterance sample {oldest} on, "
            f"but the audio starts at sample {start_sample}"
        )
    x = as_float_samples(pcm16k)
    last = first_frame + count - 1
    first_window = layout.first_window(first_frame)
    last_window = layout.last_window(last)
    mel_first = max(layout.window_start(first_window), 0)
    mel_count = layout.window_start(last_window) + tl.MEL_WINDOW_FRAMES - mel_first
    # utterance samples [lo - 1, hi): one before the first for pre-emphasis; zeros outside
    lo = tl.MEL_HOP * mel_first - tl.MEL_HALF_WINDOW
    hi = tl.MEL_HOP * (mel_first + mel_count - 1) + tl.MEL_HALF_WINDOW
    span = np.zeros(hi - lo + 1)
    a, b = max(lo - 1, start_sample), min(hi, start_sample + len(x))
    if b > a:
        span[a - (lo - 1) : b - (lo - 1)] = x[a - start_sample : b - start_sample]
    mel = mel_frames(preemphasize(span[1:], previous=span[0]), mel_count)
    starts = [layout.window_start(j) for j in range(first_window, last_window + 1)]
    encoded = _encode(encode, encoder_windows(mel, mel_first, starts))
    return np.stack(
        [frame_features(encoded, first_window, k, layout) for k in range(first_frame, last + 1)]
    )
