"""Sample-rate conversion to 16 kHz (or any rate), streaming and one-shot, sharing one filter.

A rational ratio ``up/down`` (reduced by the gcd) is realised as a polyphase FIR: conceptually the
input is zero-stuffed by ``up``, low-pass filtered at the lower of the two Nyquist rates and kept
every ``down``-th sample. The filter is a Kaiser-window ``firwin`` design: flat to 95% of the
lower Nyquist frequency (7600 Hz when the target is 16 kHz, the top of the mel filterbank),
at least 80 dB down from the lower Nyquist frequency on, so nothing aliases into the band.

The filter's delay is compensated: output sample ``n`` is the signal at input time
``n / out_rate`` seconds; the audio before the stream's start is taken as silence. The price is
a short lookahead: output ``n`` can only be computed once the input has reached
``n / out_rate + latency_s`` (about 6.3 ms for 22.05/24/44.1/48 kHz -> 16 kHz, 12.6 ms for 8 kHz).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
from scipy.signal import firwin, kaiserord

from lipstream.audio.pcm import AudioChunk, as_float_samples, validate_sample_rate
from lipstream.audio.timeline import SAMPLE_RATE as FEATURE_RATE
from lipstream.errors import InvalidInput

TARGET_RATE = FEATURE_RATE
_PASSBAND = 0.95  # fraction of the lower Nyquist frequency kept flat
_STOPBAND_DB = 80.0
_BLOCK = 1024  # outputs computed per vectorised step: bounds the gather matrix


@lru_cache(maxsize=16)
def _polyphase(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase table [up, taps] (row p holds h[p + t*up]) and the delay D in upsampled samples."""
    fs_up = 2.0 * max(up, down)  # in units where the lower Nyquist frequency is 1.0
    width = (1.0 - _PASSBAND) / (fs_up / 2.0)
    numtaps, beta = kaiserord(_STOPBAND_DB, width)
    numtaps += 1 - numtaps % 2  # odd length: the delay (numtaps-1)/2 is a whole sample
    cutoff = (1.0 + _PASSBAND) / 2.0 / (fs_up / 2.0)
    # zero-stuffing divides the level by `up`: the filter gives it back
    h = firwin(numtaps, cutoff, window=("kaiser", beta)) * up
    taps = -(-numtaps // up)
    padded = np.zeros(taps * up)
    padded[:numtaps] = h
    table = np.ascontiguousarray(padded.reshape(taps, up).T)
    return table, (numtaps - 1) // 2


def _as_input(audio: AudioChunk | np.ndarray, in_rate: int) -> np.ndarray:
    if isinstance(audio, AudioChunk) and audio.sample_rate != in_rate:
        raise InvalidInput(
            f"audio chunk is {audio.sample_rate} Hz but this resampler expects {in_rate} Hz"
        )
    return as_float_samples(audio)


class StreamingResampler:
    """Resample a stream chunk by chunk; the concatenated output equals ``resample`` over it all.

    ``process`` returns every output sample whose input has fully arrived (float32, same scale
    as the input: int16 is read as sample/32768); ``flush`` ends the stream, pads it with
    silence, returns the rest (``ceil(N * out_rate / in_rate)`` samples in all for N input
    samples) and makes the resampler ready for a new stream.
    """

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE) -> None:
        self.in_rate = validate_sample_rate(in_rate)
        self.out_rate = validate_sample_rate(out_rate)
        g = gcd(self.in_rate, self.out_rate)
        self.up, self.down = self.out_rate // g, self.in_rate // g
        self.passthrough = self.up == self.down
        if self.passthrough:
            self._table, self._delay = np.ones((1, 1)), 0
        else:
            self._table, self._delay = _polyphase(self.up, self.down)
        self._taps = self._table.shape[1]
        self.reset()

    @property
    def latency_s(self) -> float:
        """How far past an output sample's time the input must reach before it is computed."""
        return self._delay / (self.in_rate * self.up)

    @property
    def held_bytes(self) -> int:
        """Bytes of input held for outputs not yet computed."""
        return self._buf.nbytes

    def reset(self) -> None:
        """Forget the stream so far; the next sample starts a new stream at time 0."""
        # the oldest input an output can reach is taps-1 before its newest: silence before t=0
        self._buf = np.zeros(self._taps - 1)
        self._buf_start = -(self._taps - 1)  # stream index of self._buf[0]
        self._received = 0
        self._produced = 0

    def _newest_input(self, n: np.ndarray | int) -> np.ndarray | int:
        return (n * self.down + self._delay) // self.up

    def _run(self, stop: int) -> np.ndarray:
        """Outputs self._produced .. stop-1 from the buffered input."""
        start = self._produced
        out = np.empty(max(stop - start, 0), dtype=np.float32)
        back = np.arange(self._taps)
        for b in range(start, stop, _BLOCK):
            n = np.arange(b, min(b + _BLOCK, stop))
            acc = n * self.down + self._delay
            newest, phase = acc // self.up - self._buf_start, acc % self.up
            x = self._buf[newest[:, None] - back]
            out[b - start : b - start + len(n)] = np.einsum("ij,ij->i", x, self._table[phase])
        self._produced = max(stop, start)
        # keep only what the next output can still reach
        keep_from = int(self._newest_input(self._produced)) - (self._taps - 1)
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep_from
        return out

    def _ready(self) -> int:
        """Number of outputs (from the stream start) whose newest input has arrived."""
        # newest_input(n) < received  <=>  n*down + D < received*up
        return max(-(-(self._received * self.up - self._delay) // self.down), 0)

    def process(self, audio: AudioChunk | np.ndarray) -> np.ndarray:
        """Feed input samples; return the output samples that are now complete (float32)."""
        x = _as_input(audio, self.in_rate)
        if self.passthrough:
            self._received += len(x)
            self._produced += len(x)
            return x.astype(np.float32)
        self._buf = np.concatenate([self._buf, x])
        self._received += len(x)
        return self._run(self._ready())

    def flush(self) -> np.ndarray:
        """End the stream: pad with silence, return the remaining outputs, and reset."""
        if self.passthrough:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self.up // self.down)
        if total > self._produced:
            needed = int(self._newest_input(total - 1)) + 1 - self._received
            self._buf = np.concatenate([self._buf, np.zeros(max(needed, 0))])
            out = self._run(total)
        else:
            out = np.zeros(0, dtype=np.float32)
        self.reset()
        return out


def resample(
    samples: AudioChunk | np.ndarray, in_rate: int, out_rate: int = TARGET_RATE
) -> np.ndarray:
    """Resample a whole signal (float32 out, ``ceil(N * out_rate / in_rate)`` samples)."""
    stream = StreamingResampler(in_rate, out_rate)
    return np.concatenate([stream.process(samples), stream.flush()])
