"""When a video frame can be made: the timing facts of the SyncTalk_2D 'AVE' feature timeline.

Video runs at 25 fps; frame k covers 16 kHz samples [640k, 640k + 640). Its generator input is
feature rows [k-8, k+8); row r is encoder output E[max(r-1, 0)]; encoder window j reads mel
frames [floor(16j/5), +16); mel frame m reads samples [200m - 400, 200m + 400) (centred STFT).
So frame k's newest sample comes from E[k+6], mel frame floor(16(k+6)/5) + 15.
The stream is continued by silence at its end, so a stream of N samples has ceil(N/640) frames.
"""

from __future__ import annotations

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MEL_HOP = 200
MEL_HALF_WINDOW = 400  # centred STFT: a frame reaches this far past its centre
MEL_WINDOW_FRAMES = 16  # mel frames per encoder window
FEATURE_SIZE = 512
ROWS_BEFORE = 8  # feature rows before the current one in a generator window
ROWS_AFTER = 7  # feature rows after the current one
WINDOW_ROWS = ROWS_BEFORE + 1 + ROWS_AFTER  # 16 rows -> [32, 16, 16]
FRAME_FEATURE_SHAPE = (32, 16, 16)  # one frame's generator input: its rows, row-major


def encoder_window_start(j: int) -> int:
    """First mel frame of encoder window j: floor(16j/5), i.e. int(80 * j / 25) exactly."""
    return (MEL_WINDOW_FRAMES * j) // 5


def last_encoder_window(frame: int) -> int:
    """The newest encoder output frame ``frame`` uses: row frame+7 is E[frame+6]."""
    return frame + ROWS_AFTER - 1


def last_mel_frame(frame: int) -> int:
    """The newest mel frame ``frame`` depends on."""
    return encoder_window_start(last_encoder_window(frame)) + MEL_WINDOW_FRAMES - 1


def samples_needed(frame: int) -> int:
    """How many 16 kHz samples from the stream start must exist before ``frame`` can be made."""
    if frame < 0:
        raise ValueError(f"frame index must be >= 0, got {frame}")
    return MEL_HOP * last_mel_frame(frame) + MEL_HALF_WINDOW


def lookahead_samples(frame: int) -> int:
    """Samples ``frame`` needs past the start of its own 40 ms (7080..7240, period 5 frames)."""
    return samples_needed(frame) - SAMPLES_PER_FRAME * frame


def frames_ready(samples: int) -> int:
    """How many frames (0, 1, ...) can be made once ``samples`` 16 kHz samples exist."""
    if samples < samples_needed(0):
        return 0
    # samples_needed grows by exactly 3200 every 5 frames; step there, then walk the rest
    k = 5 * ((samples - samples_needed(0)) // (5 * SAMPLES_PER_FRAME))
    while samples_needed(k) <= samples:
        k += 1
    return k


def frame_count(samples: int) -> int:
    """Frames of a finished stream of ``samples`` samples: one per started 40 ms."""
    return -(-samples // SAMPLES_PER_FRAME)


LOOKAHEAD_SAMPLES = max(lookahead_samples(k) for k in range(5))  # 7240
"""Worst-case samples a frame needs past the start of its 40 ms."""
LOOKAHEAD_MS = 1000.0 * LOOKAHEAD_SAMPLES / SAMPLE_RATE  # 452.5
"""Worst-case lookahead from a frame's start, in ms: frame k is ready by 40k + 452.5 ms."""
LOOKAHEAD_BEYOND_FRAME_MS = LOOKAHEAD_MS - 1000.0 / FPS  # 412.5
"""Worst-case lookahead past the end of a frame's own 40 ms."""
LOOKAHEAD_FRAMES = -(-(LOOKAHEAD_SAMPLES - SAMPLES_PER_FRAME) // SAMPLES_PER_FRAME)  # 11
"""Frame k waits for audio inside frame k + 11 (10.3 frames past its own, rounded up)."""


def first_sample_needed(frame: int) -> int:
    """Index of the oldest 16 kHz sample ``frame`` depends on (negative: before the start).

    Its oldest feature row is E[frame - 9] (row frame-8 is E[frame-9]); that encoder window's
    first mel frame reaches 400 samples back, and pre-emphasis one sample more.
    """
    oldest_window = max(frame - ROWS_BEFORE - 1, 0)
    return MEL_HOP * encoder_window_start(oldest_window) - MEL_HALF_WINDOW - 1
