"""The timing facts: which audio a video frame needs, and how far ahead that reaches, for
SyncTalk_2D's feature layout and the low-latency ones."""

from __future__ import annotations

import pytest

from lipstream.audio import timeline as tl
from lipstream.errors import InvalidInput

SYNC = tl.SYNCTALK2D
LOW_LATENCY = [tl.FeatureLayout(15 - after, after, "frame_end") for after in range(4)]


def test_synctalk2d_lookahead():
    assert SYNC.max_lookahead_samples == 7240
    assert SYNC.lookahead_ms == 452.5
    assert SYNC.lookahead_frames == 11
    assert SYNC.samples_needed(0) == 7200  # the first frame can be made after 450 ms of audio


def test_newest_sample_follows_from_rows_windows_and_mel_frames():
    for k in range(500):
        newest_window = k + 6  # rows up to k+7; row r is E[r-1]
        newest_mel = int(80.0 * (newest_window / 25.0)) + 15
        assert SYNC.samples_needed(k) - 1 == 200 * newest_mel + 399  # centred STFT reach
        assert 7080 <= SYNC.lookahead_samples(k) <= SYNC.max_lookahead_samples
        # the frame waits for audio inside frame k + 11 at most
        assert (SYNC.samples_needed(k) - 1) // tl.SAMPLES_PER_FRAME <= k + SYNC.lookahead_frames


def test_synctalk2d_rows_are_the_windows_of_the_frames_before():
    assert SYNC.rows(0) == [-1] * 8 + [0, 0, 1, 2, 3, 4, 5, 6]
    assert SYNC.rows(20) == list(range(11, 27))
    assert SYNC.first_sample_needed(20) == 200 * ((16 * 11) // 5) - 401


@pytest.mark.parametrize("layout", LOW_LATENCY)
def test_frame_end_windows_end_on_the_frame_end(layout):
    rows_after = layout.rows_after
    assert layout.lookahead_ms == 40 * (rows_after + 1) + 25  # 65, 105, 145, 185 ms
    for k in range(60):
        window = layout.last_window(k)
        assert window == k + rows_after
        last_mel = layout.window_start(window) + tl.MEL_WINDOW_FRAMES - 1
        # the newest mel frame is the one centred on (or just before) the end of frame k+a
        assert last_mel * tl.MEL_HOP <= tl.SAMPLES_PER_FRAME * (window + 1)
        assert (last_mel + 1) * tl.MEL_HOP > tl.SAMPLES_PER_FRAME * (window + 1)
        assert layout.lookahead_samples(k) <= layout.max_lookahead_samples
    assert layout.rows(0) == [-1] * layout.rows_before + list(range(rows_after + 1))
    assert layout.window_start(0) < 0  # the first windows reach into the silence before


@pytest.mark.parametrize("layout", [SYNC, *LOW_LATENCY])
def test_frames_ready_is_the_inverse_of_samples_needed(layout):
    for samples in range(0, 30000, 7):
        k = layout.frames_ready(samples)
        assert k == 0 or layout.samples_needed(k - 1) <= samples
        assert layout.samples_needed(k) > samples


def test_a_lookahead_picks_the_longest_layout_within_it():
    assert tl.FeatureLayout.for_lookahead_ms(145) == tl.FeatureLayout(13, 2, "frame_end")
    assert tl.FeatureLayout.for_lookahead_ms(150) == tl.FeatureLayout(13, 2, "frame_end")
    assert tl.FeatureLayout.for_lookahead_ms(65) == tl.FeatureLayout(15, 0, "frame_end")
    assert tl.FeatureLayout.for_lookahead_ms(452.5) == SYNC
    with pytest.raises(InvalidInput, match="shortest lookahead"):
        tl.FeatureLayout.for_lookahead_ms(40)


def test_bad_layouts_are_refused_with_what_is_accepted():
    with pytest.raises(InvalidInput, match="must be 16"):
        tl.FeatureLayout(8, 8, "frame_end")
    with pytest.raises(InvalidInput, match="synctalk2d, frame_end"):
        tl.FeatureLayout(8, 7, "centre")
    with pytest.raises(InvalidInput, match="rows_before, rows_after and alignment"):
        tl.FeatureLayout.from_dict({"rows_after": 2})
    with pytest.raises(InvalidInput, match="integers"):
        tl.FeatureLayout.from_dict({"rows_before": 13, "rows_after": "2", "alignment": "frame_end"})
    layout = tl.FeatureLayout(13, 2, "frame_end")
    assert tl.FeatureLayout.from_dict(layout.to_dict()) == layout


def test_a_finished_stream_has_one_frame_per_started_40_ms():
    assert [tl.frame_count(n) for n in (0, 1, 639, 640, 641, 16000)] == [0, 1, 1, 1, 2, 25]
