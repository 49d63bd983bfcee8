"""Evaluation: image metrics of the mouth region and the lip-sync correlation."""

from __future__ import annotations

import math

import numpy as np
import torch

from lipstream.avatar.evaluate import (
    MOUTH_COLS,
    MOUTH_ROWS,
    evaluate,
    pearson,
    region_metrics,
    ssim,
    sync_score,
)
from lipstream.avatar.train import load_training_data
from lipstream.geometry import inner
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.network import Generator, GeneratorConfig
from lipstream.video import read_video_frames


def test_mouth_region_is_the_lower_half_of_the_mask() -> None:
    assert (MOUTH_ROWS.start, MOUTH_ROWS.stop) == (157, 310)
    assert (MOUTH_COLS.start, MOUTH_COLS.stop) == (5, 315)


def test_ssim_is_one_for_identical_images_and_falls_with_noise() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert ssim(image, image) == 1.0
    noisy = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    assert 0.0 < ssim(image, noisy) < 0.9


def test_pearson_and_sync_score() -> None:
    assert math.isclose(pearson([1, 2, 3, 4], [2, 4, 6, 8]), 1.0)
    assert math.isclose(pearson([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    score, pairs = sync_score([1.0, None, 2.0, 3.0, 5.0], [1.0, 7.0, 2.0, None, 5.0])
    assert pairs == 3 and math.isclose(score, 1.0)
    assert math.isnan(sync_score([1.0, None], [1.0, 2.0])[0])


def test_region_metrics_on_perfect_and_damaged_mouths() -> None:
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (2, 320, 320, 3), dtype=np.uint8)
    perfect = region_metrics(real, real)
    assert perfect["psnr_mouth_db"] == math.inf and perfect["ssim_mouth"] == 1.0
    damaged = real.copy()
    damaged[:, MOUTH_ROWS, MOUTH_COLS] = 128
    worse = region_metrics(damaged, real)
    assert worse["psnr_mouth_db"] < worse["psnr_inner_db"] < 30
    outside = real.copy()
    outside[:, :100] = 0  # damage above the mouth: the mouth numbers do not change
    assert region_metrics(outside, real)["psnr_mouth_db"] == math.inf


HELD = list(range(28, 40))  # the frames evaluated here


class ReferencePassThrough(torch.nn.Module):
    """A "generator" that copies the reference channels: perfect with its own crop as
    reference, deaf to the audio."""

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return image[:, :3] + 0.5 / 255  # + half a level: truncation to uint8 gives the input


class RealFrames(torch.nn.Module):
    """A "generator" that returns the real frames in the order they are asked for: what
    perfect lip sync from the audio would give, whatever the reference."""

    def __init__(self, regions: np.ndarray, order: list[int]):
        super().__init__()
        self.regions = torch.from_numpy(np.ascontiguousarray(regions[order]))
        self.cursor = 0

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        picked = torch.arange(self.cursor, self.cursor + len(image)) % len(self.regions)
        self.cursor += len(image)
        return self.regions[picked].permute(0, 3, 1, 2).float().div(255) + 0.5 / 255


def _evaluate(fake_dataset, generator, measure_opening, frames=HELD, **kwargs):
    data = load_training_data(fake_dataset.path)
    full = list(read_video_frames(data.video_path))
    return evaluate(
        generator,
        AudioEncoder(),
        data.crops,
        torch.from_numpy(data.mel_windows),
        frames,
        boxes=[data.box(i) for i in frames],
        full_frames=[full[i] for i in frames],
        measure_opening=measure_opening,
        **kwargs,
    )


def test_copying_the_reference_is_perfect_only_with_the_own_crop(
    fake_dataset, measure_opening
) -> None:
    metrics = _evaluate(fake_dataset, ReferencePassThrough(), measure_opening)
    assert metrics["frames"] == 12
    assert metrics["psnr_mouth_db"] == math.inf and metrics["ssim_mouth"] == 1.0
    # with another frame as reference the copied mouth is the wrong one: sync is not earned
    assert metrics["psnr_mouth_cross_db"] < 40
    assert metrics["sync_frames"] == 12 and metrics["sync_correlation"] < 0.5


def test_a_mouth_that_follows_the_frame_scores_perfect_sync(fake_dataset, measure_opening) -> None:
    data = load_training_data(fake_dataset.path)
    metrics = _evaluate(fake_dataset, RealFrames(inner(data.crops), HELD), measure_opening)
    assert metrics["psnr_mouth_cross_db"] == math.inf
    assert metrics["sync_frames"] == 12 and math.isclose(metrics["sync_correlation"], 1.0)
    given = _evaluate(
        fake_dataset,
        RealFrames(inner(data.crops), HELD),
        measure_opening,
        reference_openings=list(fake_dataset.opening[HELD]),
    )
    assert given["sync_correlation"] > 0.95  # against the true track, not the measured one


def test_an_untrained_generator_gets_numbers_and_no_sync(fake_dataset, measure_opening) -> None:
    torch.manual_seed(0)
    metrics = _evaluate(
        fake_dataset, Generator(GeneratorConfig(0.125)), measure_opening, frames=[36, 37, 38, 39]
    )
    assert all(np.isfinite(metrics[k]) for k in ("psnr_mouth_db", "ssim_mouth", "psnr_inner_db"))
    assert metrics["psnr_mouth_db"] < 20
    # no face is found in its output, so no pair can be scored
    assert metrics["frames"] == 4
    assert metrics["sync_frames"] == 0 and math.isnan(metrics["sync_correlation"])


def test_the_measure_tracks_the_real_mouth(fake_dataset, measure_opening) -> None:
    # the stub measure used by these tests finds the mouth the dataset drew
    frames = list(read_video_frames(fake_dataset.path / "video.mp4"))
    score, pairs = sync_score([measure_opening(f) for f in frames], list(fake_dataset.opening))
    assert pairs == len(frames) and score > 0.95
