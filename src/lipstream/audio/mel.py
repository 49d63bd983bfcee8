"""SyncTalk_2D-compatible mel spectrogram (16 kHz in, [80, T] out), whole-signal and streaming.

Steps, as SyncTalk_2D's ``audio.melspectrogram`` computes them with librosa 0.10:
pre-emphasis 0.97 (x[-1] = 0); STFT n_fft 800, hop 200, periodic Hann 800, centred with 400 zeros
each side; magnitude; Slaney mel filterbank (80 bands, 55..7600 Hz, Slaney area norm, float32);
``20*log10(max(1e-5, mel)) - 20``; ``clip(8*(S + 100)/100 - 4, -4, 4)``.
Mel frame ``m`` covers input samples [200m - 400, 200m + 400).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lipstream.audio.pcm import AudioChunk, as_float_samples
from lipstream.audio.timeline import SAMPLE_RATE
from lipstream.errors import InvalidInput

N_FFT = 800
HOP = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
PAD = N_FFT // 2  # centred STFT: zeros each side
_REF_LEVEL_DB = 20.0
_MIN_LEVEL_DB = -100.0
_MAX_ABS = 4.0
_BLOCK = 1024  # mel frames computed per step
_MIN_AMPLITUDE = np.exp(_MIN_LEVEL_DB / 20 * np.log(10))  # 1e-5
SILENCE = -_MAX_ABS
"""The value of every band of a mel frame of silence (and of the frames before a stream)."""


# Slaney's auditory mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return float(_MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP)
    return hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _F_SP * mels
    log_part = mels >= _MIN_LOG_MEL
    hz[log_part] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_part] - _MIN_LOG_MEL))
    return hz


@lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """The Slaney-normalised triangular mel filterbank, float32 [80, 401] (librosa's numbers)."""
    fft_hz = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    # filled in float64, stored in float32, then scaled in place: the order librosa uses,
    # so the rounding (and hence the output) is the same
    weights = np.zeros((N_MELS, N_FFT // 2 + 1), dtype=np.float32)
    for i in range(N_MELS):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[:, None]
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    # periodic Hann (scipy.signal.get_window('hann', 800, fftbins=True))
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    w.setflags(write=False)
    return w


def preemphasize(x: np.ndarray, previous: float = 0.0) -> np.ndarray:
    """``y[n] = x[n] - 0.97 x[n-1]`` in float64; ``previous`` is x[-1] (0 at a stream's start)."""
    x = np.asarray(x, dtype=np.float64)
    y = x.copy()
    if len(x):
        y[0] -= PREEMPHASIS * previous
        y[1:] -= PREEMPHASIS * x[:-1]
    return y


def mel_frames(padded: np.ndarray, count: int) -> np.ndarray:
    """Mel frames from pre-emphasised, centre-padded samples: frame i uses padded[200i : 200i+800].

    This is the per-frame arithmetic shared by ``melspectrogram`` and ``StreamingMel``; the
    result is float64 [80, count].
    """
    if count <= 0:
        return np.zeros((N_MELS, 0))
    needed = HOP * (count - 1) + N_FFT
    if len(padded) < needed:
        raise InvalidInput(f"{count} mel frames need {needed} padded samples, got {len(padded)}")
    frames = sliding_window_view(padded[:needed], N_FFT)[::HOP]
    mel = np.empty((N_MELS, count))
    # in blocks: the windowed frames of minutes of audio would otherwise take gigabytes
    for b in range(0, count, _BLOCK):
        magnitude = np.abs(np.fft.rfft(frames[b : b + _BLOCK] * _window(), axis=1))
        mel[:, b : b + _BLOCK] = mel_basis() @ magnitude.T
    db = 20.0 * np.log10(np.maximum(_MIN_AMPLITUDE, mel)) - _REF_LEVEL_DB
    scaled = 2 * _MAX_ABS * ((db - _MIN_LEVEL_DB) / -_MIN_LEVEL_DB) - _MAX_ABS
    return np.clip(scaled, -_MAX_ABS, _MAX_ABS)


def melspectrogram(pcm16k: AudioChunk | np.ndarray) -> np.ndarray:
    """SyncTalk_2D's mel of a whole 16 kHz signal: float64 [80, 1 + len // 200].

    int16 input is scaled by 1/32768, float input is taken as is; the signal ends where the
    array ends (SyncTalk_2D's convention), unlike the feature timeline, which continues it with
    silence.
    """
    if isinstance(pcm16k, AudioChunk) and pcm16k.sample_rate != SAMPLE_RATE:
        raise InvalidInput(f"the mel front end takes 16000 Hz audio, got {pcm16k.sample_rate} Hz")
    x = as_float_samples(pcm16k)
    padded = np.concatenate([np.zeros(PAD), preemphasize(x), np.zeros(PAD)])
    return mel_frames(padded, 1 + len(x) // HOP)


class StreamingMel:
    """Mel frames of a 16 kHz stream, each computed as soon as its last sample has arrived.

    Frame ``m`` is ready once ``200m + 400`` samples have been pushed. The values equal those of
    ``melspectrogram`` over the same samples followed by enough silence. Only the samples the
    next frame still needs are kept.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self, first_frame: int = 0, previous: float = 0.0) -> None:
        """Start a new stream at sample 0, mel frame 0; or continue one from mel frame ``m``.

        With ``first_frame`` m > 0 the stream's older samples are not given: the next sample
        pushed is sample ``max(200m - 400, 0)``, ``previous`` is the sample before it (for
        pre-emphasis), and the first frame computed is frame m, equal to that of the whole
        stream.
        """
        if first_frame < 0:
            raise InvalidInput(f"mel frames count from 0, got first_frame={first_frame}")
        self._previous = float(previous) if HOP * first_frame > PAD else 0.0
        # pre-emphasised, padded samples from padded index 200*next (zeros before sample 0)
        self._buf = np.zeros(max(PAD - HOP * first_frame, 0))
        self.next_frame = first_frame
        self.samples_received = max(HOP * first_frame - PAD, 0)  # the next sample's index

    @property
    def held_bytes(self) -> int:
        """Bytes of audio held for frames not yet computed."""
        return self._buf.nbytes

    def push(self, samples: AudioChunk | np.ndarray) -> np.ndarray:
        """Feed 16 kHz samples; return the mel frames completed by them, float64 [80, n]."""
        if isinstance(samples, AudioChunk) and samples.sample_rate != SAMPLE_RATE:
            raise InvalidInput(
                f"the mel front end takes 16000 Hz audio, got {samples.sample_rate} Hz"
            )
        x = as_float_samples(samples)
        if len(x):
            self._buf = np.concatenate([self._buf, preemphasize(x, self._previous)])
            self._previous = float(x[-1])
            self.samples_received += len(x)
        count = (len(self._buf) - N_FFT) // HOP + 1 if len(self._buf) >= N_FFT else 0
        frames = mel_frames(self._buf, count)
        if count:
            self._buf = self._buf[HOP * count :]
            self.next_frame += count
        return frames
