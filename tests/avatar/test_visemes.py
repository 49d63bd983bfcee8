"""Phonemes to mouth shapes: closures close, vowels open, motion is smooth, silence rests."""

from __future__ import annotations

import numpy as np
import pytest

from lipstream.audio.timeline import FPS
from lipstream.avatar import visemes
from lipstream.errors import InvalidInput

OPEN, SPREAD, ROUND = 0, 1, 2


def timed(*items: tuple[str, float]) -> list[tuple[str, float, float]]:
    """(symbol, duration) pairs -> (symbol, start, end) laid end to end from 0."""
    out, t = [], 0.0
    for symbol, duration in items:
        out.append((symbol, t, t + duration))
        t += duration
    return out


def frame_at(t: float) -> int:
    return int(t * FPS)


# "map", as Piper times it: the stress mark before the vowel, silence around.
MAP = timed(("^", 0.2), ("m", 0.07), ("ˈ", 0.03), ("æ", 0.2), ("p", 0.05), ("$", 0.3))


def test_closures_close_for_map() -> None:
    track = visemes.mouth_track(MAP, visemes.frame_count(0.85))
    m_start, m_end = MAP[1][1], MAP[1][2]
    p_start, p_end = MAP[4][1], MAP[4][2]
    assert track[frame_at((m_start + m_end) / 2), OPEN] < 0.08
    assert track[frame_at((p_start + p_end) / 2), OPEN] < 0.08
    # ... and the vowel between them opens the mouth well.
    assert track[frame_at(0.4), OPEN] > 0.5


def test_a_closure_shorter_than_a_frame_still_shows() -> None:
    # A 20 ms "b" between two open vowels, placed between two frame centres.
    phonemes = timed(("ɑ", 0.31), ("b", 0.02), ("ɑ", 0.3))
    track = visemes.mouth_track(phonemes, visemes.frame_count(0.63))
    assert track[:, OPEN].max() > 0.7
    assert track[6:10, OPEN].min() < 0.1


def test_opening_follows_the_vowels() -> None:
    vowels = ["ɑ", "æ", "ɛ", "ə", "ɪ", "u"]
    openings = []
    for vowel in vowels:
        track = visemes.mouth_track(timed(("_", 0.3), (vowel, 0.3), ("_", 0.3)), 23)
        openings.append(track[frame_at(0.45), OPEN])
    assert openings == sorted(openings, reverse=True), dict(zip(vowels, openings, strict=True))
    # "ee" spreads the lips and "oo" rounds them.
    ee = visemes.mouth_track(timed(("_", 0.3), ("i", 0.3), ("_", 0.3)), 23)[frame_at(0.45)]
    oo = visemes.mouth_track(timed(("_", 0.3), ("u", 0.3), ("_", 0.3)), 23)[frame_at(0.45)]
    assert ee[SPREAD] > 0.6 > ee[ROUND]
    assert oo[ROUND] > 0.8 > oo[SPREAD] + 0.6


def test_rounding_is_anticipated_across_a_consonant() -> None:
    # Coarticulation: in "sweet" the lips round for the w during the s.
    track = visemes.mouth_track(timed(("_", 0.2), ("s", 0.1), ("w", 0.08), ("i", 0.2)), 15)
    alone = visemes.mouth_track(timed(("_", 0.2), ("s", 0.1), ("t", 0.08), ("i", 0.2)), 15)
    s_frame = frame_at(0.25)
    assert track[s_frame, ROUND] > alone[s_frame, ROUND] + 0.15


def test_trajectories_are_smooth() -> None:
    # A sentence-like stream: "the big cat may move over the blue fence".
    symbols = list("ðəbɪɡkætmeɪmuvoʊvɚðəblufɛns")
    rng = np.random.default_rng(1)
    phonemes = timed(*((s, float(rng.uniform(0.05, 0.14))) for s in symbols))
    n = visemes.frame_count(phonemes[-1][2])
    track = visemes.mouth_track(phonemes, n)
    assert track.dtype == np.float32 and track.shape == (n, 3)
    assert np.all((track >= 0) & (track <= 1))
    steps = np.abs(np.diff(track, axis=0))
    assert steps.max() < 0.5  # about the fastest a jaw moves: open to shut in ~2 frames
    assert steps.mean() < 0.12


def test_silence_rests_the_mouth() -> None:
    phonemes = timed(("ɑ", 0.3), (".", 0.1), ("_", 1.5), ("ɑ", 0.3))
    track = visemes.mouth_track(phonemes, visemes.frame_count(2.2))
    middle = track[frame_at(0.8) : frame_at(1.6)]
    assert np.all(middle < 0.03)


def test_word_gaps_blend_their_neighbours() -> None:
    track = visemes.mouth_track(timed(("ɑ", 0.3), (" ", 0.06), ("ɑ", 0.3)), 16)
    assert track[frame_at(0.33), OPEN] > 0.8  # a word gap alone does not close the mouth


def test_stress_and_length_marks_join_their_sounds() -> None:
    merged = visemes.merge_modifiers(
        [("m", 0.0, 0.1), ("ˈ", 0.1, 0.15), ("ɑ", 0.15, 0.3), ("ː", 0.3, 0.35), ("p", 0.35, 0.4)]
    )
    assert merged == [("m", 0.0, 0.1), ("ɑ", 0.1, 0.35), ("p", 0.35, 0.4)]


def test_opening_is_the_open_channel() -> None:
    track = visemes.mouth_track(MAP, 20)
    assert np.array_equal(visemes.opening(track), track[:, 0])
    with pytest.raises(InvalidInput, match=r"\[n_frames, 3\]"):
        visemes.opening(np.zeros(5))


def test_frame_count_covers_the_audio() -> None:
    assert visemes.frame_count(1.0) == 25
    assert visemes.frame_count(1.001) == 26
    assert visemes.frame_count(0.0) == 0


@pytest.mark.parametrize(
    ("phonemes", "n_frames", "message"),
    [
        (MAP, -1, "n_frames"),
        ([("a", 0.3, 0.1)], 5, "ends before it starts"),
        ([("a", 0.1)], 5, "tuples"),
    ],
)
def test_bad_input_is_refused(phonemes: list, n_frames: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        visemes.mouth_track(phonemes, n_frames)
