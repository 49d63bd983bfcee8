"""When a video frame can be made: the timing facts of a feature layout.

Video runs at 25 fps; frame k covers 16 kHz samples [640k, 640k + 640). Mel frame m reads
samples [200m - 400, 200m + 400) (centred STFT); mel frames before 0 are silence. An encoder
window is 16 mel frames; its output is one 512-value feature row. A frame's generator input is
16 rows, [k - rows_before, k + rows_after], reshaped [16, 512] -> [32, 16, 16]; rows before the
stream's start are zero. A ``FeatureLayout`` says which rows a frame reads and where each row's
window lies; every timing figure below follows from it:

- ``synctalk2d`` (SyncTalk_2D's 'AVE' layout, 8 rows before, 7 after): row r >= 1 is window
  r - 1, row 0 window 0, and window j starts at mel frame floor(16j/5), i.e. at the start of
  frame j, reaching 200 ms forward. Frame k's newest sample comes from window k + 6: 452.5 ms
  past the frame's start at worst.
- ``frame_end``: row r is window r, which ends at mel frame floor(16(r+1)/5), the one centred
  on the end of frame r. With a rows after the current one a frame needs 40(a+1) + 25 ms past
  its start: 65 ms with none, 145 ms with two.

The stream is continued by silence at its end, so a stream of N samples has ceil(N/640) frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lipstream.errors import InvalidInput

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MEL_HOP = 200
MEL_HALF_WINDOW = 400  # centred STFT: a frame reaches this far past its centre
MEL_WINDOW_FRAMES = 16  # mel frames per encoder window
FEATURE_SIZE = 512
WINDOW_ROWS = 16  # feature rows per frame -> [32, 16, 16]
FRAME_FEATURE_SHAPE = (32, 16, 16)  # one frame's generator input: its rows, row-major
ALIGNMENTS = ("synctalk2d", "frame_end")
_PERIOD = 5  # window starts advance 16 mel frames every 5 video frames


@dataclass(frozen=True)
class FeatureLayout:
    """Which feature rows a frame reads and where each row's encoder window lies."""

    rows_before: int = 8
    rows_after: int = 7
    alignment: str = "synctalk2d"

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise InvalidInput(
                f"feature alignment must be one of {', '.join(ALIGNMENTS)}, got {self.alignment!r}"
            )
        if self.rows_before < 0 or self.rows_after < 0:
            raise InvalidInput(
                f"feature rows before and after the frame must be >= 0, got "
                f"{self.rows_before} and {self.rows_after}"
            )
        if self.rows_before + 1 + self.rows_after != WINDOW_ROWS:
            raise InvalidInput(
                f"a frame reads {WINDOW_ROWS} feature rows: rows before + 1 + rows after must be "
                f"{WINDOW_ROWS}, got {self.rows_before} + 1 + {self.rows_after}"
            )

    @classmethod
    def for_lookahead_ms(cls, lookahead_ms: float) -> FeatureLayout:
        """The ``frame_end`` layout with the most rows after the frame within ``lookahead_ms``
        (65 ms: none; 145 ms: two); at 452.5 ms or more, SyncTalk_2D's own layout."""
        if lookahead_ms >= SYNCTALK2D.lookahead_ms:
            return SYNCTALK2D
        for after in range(WINDOW_ROWS - 1, -1, -1):
            layout = cls(WINDOW_ROWS - 1 - after, after, "frame_end")
            if layout.lookahead_ms <= lookahead_ms:
                return layout
        raise InvalidInput(
            f"the shortest lookahead a layout offers is {cls(15, 0, 'frame_end').lookahead_ms} "
            f"ms (frame_end, no rows after the frame); got {lookahead_ms} ms"
        )

    # rows and windows --------------------------------------------------------------------------

    def window_of_row(self, row: int) -> int:
        """The encoder window feeding feature row ``row`` (>= 0)."""
        return max(row - 1, 0) if self.alignment == "synctalk2d" else row

    def window_start(self, window: int) -> int:
        """First mel frame of encoder window ``window`` (negative: it starts in the silence
        before the stream)."""
        if self.alignment == "synctalk2d":
            return (MEL_WINDOW_FRAMES * window) // _PERIOD
        return (MEL_WINDOW_FRAMES * (window + 1)) // _PERIOD - (MEL_WINDOW_FRAMES - 1)

    def rows(self, frame: int) -> list[int]:
        """The encoder window of each of ``frame``'s 16 rows, oldest first; -1 = a zero row."""
        return [
            self.window_of_row(r) if r >= 0 else -1
            for r in range(frame - self.rows_before, frame + self.rows_after + 1)
        ]

    def first_window(self, frame: int) -> int:
        """The oldest encoder window ``frame`` reads."""
        return self.window_of_row(max(frame - self.rows_before, 0))

    def last_window(self, frame: int) -> int:
        """The newest encoder window ``frame`` reads."""
        return self.window_of_row(frame + self.rows_after)

    def last_mel_frame(self, frame: int) -> int:
        """The newest mel frame ``frame`` depends on."""
        return self.window_start(self.last_window(frame)) + MEL_WINDOW_FRAMES - 1

    # samples -----------------------------------------------------------------------------------

    def samples_needed(self, frame: int) -> int:
        """How many 16 kHz samples from the stream start must exist before ``frame`` can be made."""
        if frame < 0:
            raise ValueError(f"frame index must be >= 0, got {frame}")
        return MEL_HOP * self.last_mel_frame(frame) + MEL_HALF_WINDOW

    def lookahead_samples(self, frame: int) -> int:
        """Samples ``frame`` needs past the start of its own 40 ms."""
        return self.samples_needed(frame) - SAMPLES_PER_FRAME * frame

    def frames_ready(self, samples: int) -> int:
        """How many frames (0, 1, ...) can be made once ``samples`` 16 kHz samples exist."""
        if samples < self.samples_needed(0):
            return 0
        # samples_needed grows by exactly 3200 every 5 frames; step there, then walk the rest
        k = _PERIOD * ((samples - self.samples_needed(0)) // (_PERIOD * SAMPLES_PER_FRAME))
        while self.samples_needed(k) <= samples:
            k += 1
        return k

    def first_sample_needed(self, frame: int) -> int:
        """Index of the oldest 16 kHz sample ``frame`` depends on (negative: before the start).

        The oldest window's first mel frame reaches 400 samples back, and pre-emphasis one more.
        """
        return MEL_HOP * self.window_start(self.first_window(frame)) - MEL_HALF_WINDOW - 1

    @property
    def max_lookahead_samples(self) -> int:
        """Worst-case samples a frame needs past the start of its 40 ms (7240 for SyncTalk_2D's)."""
        # frame 0 may read clamped rows; from frame rows_before + 2 on the pattern repeats
        first = self.rows_before + 2
        return max(self.lookahead_samples(k) for k in range(first, first + _PERIOD))

    @property
    def lookahead_ms(self) -> float:
        """Worst-case lookahead from a frame's start, in ms: frame k is ready by 40k + this."""
        return 1000.0 * self.max_lookahead_samples / SAMPLE_RATE

    @property
    def lookahead_frames(self) -> int:
        """Frames past frame k whose audio frame k waits for (11 for SyncTalk_2D's layout)."""
        return -(-(self.max_lookahead_samples - SAMPLES_PER_FRAME) // SAMPLES_PER_FRAME)

    # the manifest's form -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The layout as a model package's manifest writes it (``audio.layout``)."""
        return {
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "alignment": self.alignment,
        }

    @classmethod
    def from_dict(cls, data: Any) -> FeatureLayout:
        """The layout of a manifest's ``audio.layout``; a clear error for anything else."""
        if not isinstance(data, dict) or set(data) != {"rows_before", "rows_after", "alignment"}:
            raise InvalidInput(
                "audio.layout must be an object with rows_before, rows_after and alignment, got "
                f"{data!r}"
            )
        before, after = data["rows_before"], data["rows_after"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (before, after)):
            raise InvalidInput(f"audio.layout rows must be integers, got {before!r}, {after!r}")
        return cls(before, after, str(data["alignment"]))

    def describe(self) -> str:
        """One line for logs and command output."""
        return (
            f"{self.alignment}, {self.rows_before} rows before + {self.rows_after} after, "
            f"lookahead {self.lookahead_ms:g} ms"
        )


SYNCTALK2D = FeatureLayout()
"""SyncTalk_2D's 'AVE' layout: 8 rows before, 7 after, windows from each frame's start."""


def frame_count(samples: int) -> int:
    """Frames of a finished stream of ``samples`` samples: one per started 40 ms."""
    return -(-samples // SAMPLES_PER_FRAME)
