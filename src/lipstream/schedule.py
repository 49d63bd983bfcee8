"""Which avatar frame is shown at each video frame: the avatar's frames played ping-pong."""

from __future__ import annotations


def pingpong_frame_id(k: int, frame_count: int) -> int:
    """Avatar frame for video frame ``k``: 0, 1, ..., N-1, N-2, ..., 1, 0, 1, ... (no jump)."""
    if frame_count < 1:
        raise ValueError(f"an avatar needs at least one frame, got {frame_count}")
    if frame_count == 1:
        return 0
    period = 2 * (frame_count - 1)
    p = k % period
    return p if p < frame_count else period - p
