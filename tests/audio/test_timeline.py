"""The timing facts: which audio a video frame needs, and how far ahead that reaches."""

from __future__ import annotations

from lipstream.audio import timeline as tl


def test_declared_lookahead():
    assert tl.LOOKAHEAD_SAMPLES == 7240
    assert tl.LOOKAHEAD_MS == 452.5
    assert tl.LOOKAHEAD_BEYOND_FRAME_MS == 412.5
    assert tl.LOOKAHEAD_FRAMES == 11
    assert tl.samples_needed(0) == 7200  # the first frame can be made after 450 ms of audio


def test_newest_sample_follows_from_rows_windows_and_mel_frames():
    for k in range(500):
        newest_window = k + 6  # rows up to k+7; row r is E[r-1]
        newest_mel = int(80.0 * (newest_window / 25.0)) + 15
        assert tl.samples_needed(k) - 1 == 200 * newest_mel + 399  # centred STFT reach
        assert 7080 <= tl.lookahead_samples(k) <= tl.LOOKAHEAD_SAMPLES
        # the frame waits for audio inside frame k + 11 at most
        assert (tl.samples_needed(k) - 1) // tl.SAMPLES_PER_FRAME <= k + tl.LOOKAHEAD_FRAMES


def test_frames_ready_is_the_inverse_of_samples_needed():
    for samples in range(0, 30000, 7):
        k = tl.frames_ready(samples)
        assert k == 0 or tl.samples_needed(k - 1) <= samples
        assert tl.samples_needed(k) > samples


def test_a_finished_stream_has_one_frame_per_started_40_ms():
    assert [tl.frame_count(n) for n in (0, 1, 639, 640, 641, 16000)] == [0, 1, 1, 1, 2, 25]
