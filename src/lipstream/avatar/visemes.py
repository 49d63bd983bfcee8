"""From timed phonemes to mouth shapes per video frame: visemes with coarticulation.

Each phoneme (IPA as espeak-ng writes it for Piper) has a viseme target on three channels:

- ``open``: lip aperture driven by the jaw, 0 (lips together) .. 1 (wide open, as in "father");
- ``spread``: lips pulled wide, as in "see", 0 .. 1;
- ``round``: lips rounded and pushed forward, as in "you", 0 .. 1.

Targets alone would make the mouth snap from shape to shape. Real speech blends neighbours
(coarticulation): the lips round for the "w" of "sweet" during the "s". This is modelled with
dominance functions (Cohen and Massaro's idea): every phoneme pulls each channel towards its
target with a strength that is constant while it sounds and decays exponentially before and after
it; the channel value is the strength-weighted mean of all targets. Phonemes that must be seen
(p/b/m close the lips, f/v put the lip on the teeth, w and "sh" round them) pull hard; those made
inside the mouth (t, k, h) pull weakly and take the shape of the vowels around them. A faint,
ever-present pull to the rest shape closes the mouth in silence.

Frames are sampled at their centres; a closure shorter than a frame could fall between two
centres, so the frame nearest to each closure's middle is guaranteed to show it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lipstream.audio.timeline import FPS
from lipstream.errors import InvalidInput

CHANNELS = ("open", "spread", "round")
REST = (0.0, 0.0, 0.0)

# How fast a phoneme's pull fades away from it (seconds per e-fold). About 70 ms for vowels
# matches how far lip gestures anticipate and trail their sounds at normal speaking rates;
# consonants that pull hard must fade fast, or one "p" would flatten the vowels around it.
_DECAY_S = 0.07
_DECAY_STRONG_S = 0.015
# A faint pull towards rest everywhere: in long silences it is the only one left.
_REST_DOMINANCE = 0.02
# The trajectory is evaluated on a fine grid first; 5 ms resolves the shortest phonemes.
_STEP_S = 0.005


@dataclass(frozen=True)
class Viseme:
    """A mouth-shape target (open, spread, round) and how strongly each channel holds it."""

    target: tuple[float, float, float]
    dominance: tuple[float, float, float]
    closure: bool = False  # the lips must visibly meet (or touch the teeth) during it
    decay_s: float = _DECAY_S


def _v(open_: float, spread: float, round_: float, dominance: tuple[float, float, float]) -> Viseme:
    return Viseme((open_, spread, round_), dominance)


_VOWEL = (2.0, 1.5, 1.5)
_WEAK = (0.5, 0.25, 0.25)  # made with the tongue: the lips follow the neighbours
_SILENT = Viseme(REST, (1.5, 1.0, 1.0))

VISEMES: dict[str, Viseme] = {
    # Lips together: the closure must show, whatever the vowels around say.
    **dict.fromkeys("pbm", Viseme(REST, (40.0, 0.4, 0.4), True, _DECAY_STRONG_S)),
    # Lower lip against the upper teeth.
    **dict.fromkeys("fv", Viseme((0.06, 0.15, 0.0), (25.0, 0.6, 0.6), True, _DECAY_STRONG_S)),
    **dict.fromkeys("θð", _v(0.2, 0.15, 0.0, (2.0, 0.4, 0.4))),
    **dict.fromkeys("tdnlɾɫ", _v(0.2, 0.15, 0.0, (0.8, 0.4, 0.3))),
    **dict.fromkeys("sz", _v(0.12, 0.35, 0.0, (2.0, 0.8, 0.5))),
    **dict.fromkeys("ʃʒ", _v(0.16, 0.0, 0.65, (2.0, 1.5, 2.0))),
    **dict.fromkeys("kɡŋx", _v(0.3, 0.1, 0.0, _WEAK)),
    **dict.fromkeys("hʔ", _v(0.35, 0.1, 0.0, (0.2, 0.1, 0.1))),
    "w": _v(0.1, 0.0, 1.0, (3.0, 3.0, 4.0)),
    "ɹ": _v(0.2, 0.0, 0.55, (1.0, 1.0, 2.0)),
    "j": _v(0.15, 0.6, 0.0, (1.0, 2.0, 0.5)),
    # Vowels: the jaw and lip shape of each.
    **dict.fromkeys("aɑɒ", _v(0.95, 0.15, 0.0, _VOWEL)),
    "æ": _v(0.85, 0.35, 0.0, _VOWEL),
    **dict.fromkeys("ʌɐ", _v(0.7, 0.1, 0.0, _VOWEL)),
    "ə": _v(0.45, 0.1, 0.0, _VOWEL),
    **dict.fromkeys("ɚɝɜ", _v(0.4, 0.0, 0.35, _VOWEL)),
    **dict.fromkeys("ɛe", _v(0.6, 0.45, 0.0, _VOWEL)),
    **dict.fromkeys("ɪᵻɨ", _v(0.35, 0.55, 0.0, _VOWEL)),
    "i": _v(0.25, 0.8, 0.0, _VOWEL),
    "o": _v(0.55, 0.0, 0.75, _VOWEL),
    "ɔ": _v(0.7, 0.0, 0.5, _VOWEL),
    "ʊ": _v(0.3, 0.0, 0.7, _VOWEL),
    "u": _v(0.22, 0.0, 0.95, _VOWEL),
}
"""Viseme of each espeak-ng IPA symbol Piper's English voices use."""

SILENCE = frozenset('^$_.,!?;:"()-—…')
"""Symbols that mean no sound: sentence start/end, pauses and punctuation (mouth at rest)."""

_UNKNOWN = _v(0.25, 0.1, 0.0, _WEAK)  # an unlisted consonant: take the neighbours' shape
_STRESS = frozenset("ˈˌ")  # marks the next syllable; its time is the onset of what follows
_WORD_GAP = " "  # between words: no target of its own, neighbours blend across it


def viseme(symbol: str) -> Viseme | None:
    """The viseme of one phoneme symbol; None for a word gap (it has no shape of its own)."""
    if symbol == _WORD_GAP:
        return None
    if symbol in SILENCE:
        return _SILENT
    return VISEMES.get(symbol[:1], _UNKNOWN)


def _is_modifier(symbol: str) -> bool:
    # Length marks and combining diacritics change how long or how a sound is said, not where
    # the lips go: they belong to the sound before them.
    return symbol in ("ː", "ˑ", "˞", "ʰ", "ʲ") or all(unicodedata.combining(c) for c in symbol)


def merge_modifiers(phonemes: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Fold stress marks into the phoneme after them and length marks into the one before.

    Piper gives every symbol, stress marks included, some duration; those are not sounds of
    their own.
    """
    merged: list[list] = []
    pending_start: float | None = None
    for symbol, start, end in phonemes:
        if symbol in _STRESS:
            pending_start = start if pending_start is None else pending_start
            continue
        if _is_modifier(symbol) and merged:
            merged[-1][2] = end
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        merged.append([symbol, start, end])
    if pending_start is not None and merged:
        merged[-1][2] = max(merged[-1][2], phonemes[-1][2])
    return [(s, float(a), float(b)) for s, a, b in merged]


def _check(phonemes: Sequence[tuple[str, float, float]], n_frames: int) -> None:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 0:
        raise InvalidInput(f"n_frames must be a non-negative integer, got {n_frames!r}")
    for item in phonemes:
        if len(item) != 3 or not isinstance(item[0], str):
            raise InvalidInput(f"phonemes must be (symbol, start_s, end_s) tuples, got {item!r}")
        if not item[2] >= item[1]:
            raise InvalidInput(f"phoneme {item!r} ends before it starts")


def mouth_track(
    phonemes: Sequence[tuple[str, float, float]], n_frames: int, fps: int = FPS
) -> np.ndarray:
    """Mouth shape per video frame: float32 [n_frames, 3] of (open, spread, round), each 0..1.

    Frame k shows the instant ``(k + 0.5) / fps`` s, the middle of the audio it covers.
    """
    _check(phonemes, n_frames)
    segments = [
        (v, start, end)
        for symbol, start, end in merge_modifiers(phonemes)
        if (v := viseme(symbol)) is not None
    ]
    times = (np.arange(n_frames) + 0.5) / fps
    if not n_frames:
        return np.zeros((0, 3), np.float32)
    end = max(times[-1], max((e for _, _, e in segments), default=0.0)) + _STEP_S
    grid = np.arange(0.0, end + _STEP_S, _STEP_S)
    fine = _blend(segments, grid)
    track = np.stack([np.interp(times, grid, fine[:, c]) for c in range(3)], axis=1)
    # A closure shorter than a frame may fall between frame centres; the frame nearest its
    # middle must still show the lips together, or the eye notices a missing "p".
    for v, start, stop in segments:
        if not v.closure:
            continue
        middle = (start + stop) / 2
        k = int(np.clip(round(middle * fps - 0.5), 0, n_frames - 1))
        track[k, 0] = min(track[k, 0], float(np.interp(middle, grid, fine[:, 0])))
    return np.clip(track, 0.0, 1.0).astype(np.float32)


def _blend(segments: list[tuple[Viseme, float, float]], times: np.ndarray) -> np.ndarray:
    # Dominance-weighted mean of targets: sum_i D_i(t) T_i / sum_i D_i(t), per channel.
    weight = np.full((len(times), 3), _REST_DOMINANCE)
    total = weight * np.asarray(REST)
    for v, start, end in segments:
        # Only the neighbourhood matters: beyond 8 e-folds a pull is below 1/3000 of its peak.
        reach = 8 * v.decay_s
        lo, hi = np.searchsorted(times, [start - reach, end + reach])
        t = times[lo:hi]
        distance = np.maximum(np.maximum(start - t, t - end), 0.0)
        d = np.exp(-distance / v.decay_s)[:, None] * np.asarray(v.dominance)[None, :]
        weight[lo:hi] += d
        total[lo:hi] += d * np.asarray(v.target)[None, :]
    return total / weight


def opening(track: np.ndarray) -> np.ndarray:
    """The ground-truth lip aperture per frame (the ``open`` channel), float32 [n_frames]."""
    track = np.asarray(track)
    if track.ndim != 2 or track.shape[1] != 3:
        raise InvalidInput(f"a mouth track is [n_frames, 3], got {track.shape}")
    return track[:, 0].astype(np.float32)


def frame_count(duration_s: float, fps: int = FPS) -> int:
    """How many frames cover ``duration_s`` seconds of audio (the last one may be partial)."""
    return int(np.ceil(round(duration_s * fps, 6)))
