"""Encoding each mel window once when a stream's frames are made a few at a time."""

from __future__ import annotations

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.features import CachedEncoder, offline_features, segment_features


class CountingEncoder:
    def __init__(self) -> None:
        self.windows = 0
        self.weights = np.random.default_rng(3).standard_normal((80 * 16, 512)).astype(np.float32)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        self.windows += len(windows)
        return windows.reshape(len(windows), -1) @ self.weights / 50.0


def test_frame_by_frame_requests_encode_each_window_once_and_match_offline():
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(16000 * 2) * 3000).astype(np.int16)
    counting = CountingEncoder()
    encoder = CachedEncoder(counting)
    frames = []
    for k in range(tl.frame_count(len(pcm))):
        start = max(tl.SYNCTALK2D.first_sample_needed(k), 0)
        piece = pcm[start : tl.SYNCTALK2D.samples_needed(k)]
        frames.append(segment_features(piece, start, k, 1, encoder))
    reference = offline_features(pcm, CountingEncoder())
    np.testing.assert_allclose(np.concatenate(frames), reference, atol=1e-5)
    windows_needed = tl.SYNCTALK2D.last_window(len(reference) - 1) + 1
    assert counting.windows <= windows_needed  # not 16 per frame (silent ones even shared)


def test_the_cache_stays_bounded():
    counting = CountingEncoder()
    encoder = CachedEncoder(counting, max_windows=10)
    windows = np.random.default_rng(1).standard_normal((30, 1, 80, 16)).astype(np.float32)
    encoder(windows)
    encoder(windows[-10:])
    assert counting.windows == 30  # the newest ten were kept
    encoder(windows[:5])
    assert counting.windows == 35
