"""The avatar's frames play ping-pong: forward, then backward, never jumping."""

import pytest

from lipstream.schedule import pingpong_frame_id


def test_pingpong_goes_forward_then_back_without_repeating_the_ends():
    assert [pingpong_frame_id(k, 4) for k in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]


def test_consecutive_frames_never_jump():
    ids = [pingpong_frame_id(k, 7) for k in range(100)]
    assert all(abs(a - b) == 1 for a, b in zip(ids, ids[1:], strict=False))


def test_single_frame_avatar_and_empty_avatar():
    assert {pingpong_frame_id(k, 1) for k in range(5)} == {0}
    with pytest.raises(ValueError, match="at least one frame"):
        pingpong_frame_id(0, 0)
