"""Training: features on the serving timeline, a loss that falls, checkpoints, resume, the
package at the end, held-out frames kept out, and clear errors for broken datasets."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lipstream.audio.features import offline_features, torch_encoder
from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.avatar.commands import register_train
from lipstream.avatar.evaluate import audio_features
from lipstream.avatar.train import (
    FrameSampler,
    TrainConfig,
    Trainer,
    checkpoints,
    load_training_data,
    train,
)
from lipstream.errors import CheckpointError, InvalidInput
from lipstream.model.audio_encoder import AudioEncoder
from lipstream.model.package import load_package

# small and short: the network still needs full 320x320 inputs. One thread: on a CPU shared
# with other work, two threads wait on each other far more than they gain.
FAST = {"width": 0.125, "batch_size": 1, "device": "cpu", "seed": 3, "threads": 1}


LOW_LATENCY = FeatureLayout(13, 2, "frame_end")


@pytest.mark.parametrize("layout", [SYNCTALK2D, LOW_LATENCY, FeatureLayout(15, 0, "frame_end")])
def test_training_features_match_the_serving_timeline(fake_dataset, layout) -> None:
    data = load_training_data(fake_dataset.path, layout)
    encoder = AudioEncoder().eval()
    served = offline_features(data.speech, torch_encoder(encoder), layout)
    frames = [0, 1, 7, 9, 20, fake_dataset.frame_count - 1]
    with torch.no_grad():
        trained = audio_features(
            encoder, torch.from_numpy(data.mel_windows), frames, layout
        ).numpy()
    np.testing.assert_allclose(trained, served[frames], rtol=1e-4, atol=1e-5)
    # frame 0: the rows before the start are zero (2 values per feature-row in each [16, 16])
    assert np.all(trained[0, : 2 * layout.rows_before] == 0)
    assert not np.all(trained[0, 2 * layout.rows_before :] == 0)


def test_sampler_never_draws_held_out_frames() -> None:
    sampler = FrameSampler(range(30), batch_size=8, seed=1)
    for step in range(50):
        targets, references = sampler.batch(step)
        assert np.all(targets != references)  # the reference is always another frame
    assert sampler.drawn <= set(range(30))
    np.testing.assert_array_equal(sampler.batch(7)[0], FrameSampler(range(30), 8, 1).batch(7)[0])


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(fake_dataset) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(load_training_data(fake_dataset.path), TrainConfig(**FAST, lr=2e-3))
    targets, references = [3, 17], [25, 8]

    def fixed_batch_loss() -> float:
        with torch.no_grad():
            return float(trainer.loss(targets, references))

    trainer.generator.train()
    trainer.encoder.train()
    before = fixed_batch_loss()
    for _ in range(3):
        trainer.train_step()
    after = fixed_batch_loss()
    assert after < 0.9 * before, (before, after)


def test_the_last_steps_train_at_a_tenth_of_the_rate_also_when_resumed(fake_dataset) -> None:
    data = load_training_data(fake_dataset.path)
    config = TrainConfig(**FAST, steps=5, lr=1e-3, lr_decay_fraction=0.4)
    trainer = Trainer(data, config)
    rates = []
    for _ in range(5):
        trainer.train_step()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    # a run resumed to more steps decays again at its new end (and one rate when asked)
    longer = Trainer(data, TrainConfig(**FAST, steps=10, lr=1e-3, lr_decay_fraction=0.4))
    assert [longer.lr_at(k) for k in (5, 5, 6, 9)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    flat = Trainer(data, TrainConfig(**FAST, steps=10, lr_decay_fraction=0.0))
    assert {flat.lr_at(k) for k in range(10)} == {1e-3}


def test_train_writes_checkpoints_a_package_and_resumes(
    fake_dataset, tmp_path: Path, measure_opening
) -> None:
    models, run = tmp_path / "models", tmp_path / "run"
    config = TrainConfig(**FAST, steps=2, checkpoint_every=1)
    result = train(
        fake_dataset.path,
        models,
        "alice",
        config,
        run_dir=run,
        progress=False,
        measure_opening=measure_opening,
    )
    assert result.steps == 2
    assert [step for step, _ in checkpoints(run)] == [1, 2]

    # held-out frames (the last 10%) were never a target or a reference
    assert result.held_out_frames == range(36, 40)
    assert result.trained_frames and result.trained_frames.isdisjoint(result.held_out_frames)

    package = load_package(models / "alice")
    assert package.frame_count == fake_dataset.frame_count == 40
    assert package.generator_width == 0.125
    assert package.weight_families == ("pytorch",)
    assert package.speech_path is not None
    assert package.metrics["steps"] == 2
    for key in (
        "psnr_mouth_db",
        "ssim_mouth",
        "psnr_inner_db",
        "psnr_mouth_cross_db",
        "sync_frames",
        "train_seconds",
    ):
        assert key in package.metrics
    assert package.metrics["held_out_frames"] == 4
    assert package.source["kind"] == "lipstream-train"
    np.testing.assert_array_equal(package.bounds, load_training_data(fake_dataset.path).bounds)

    # without --resume an existing run is refused, with it the step count goes on
    with pytest.raises(InvalidInput, match="resume"):
        train(fake_dataset.path, models, "alice", config, run_dir=run, force=True, progress=False)
    resumed = train(
        fake_dataset.path,
        models,
        "alice",
        TrainConfig(**{**FAST, "steps": 3, "checkpoint_every": 1}),
        run_dir=run,
        resume=True,
        force=True,
        progress=False,
        measure_opening=measure_opening,
    )
    assert resumed.steps == 3
    assert [step for step, _ in checkpoints(run)] == [1, 2, 3]
    assert load_package(models / "alice").metrics["steps"] == 3
    info = json.loads((run / "checkpoints" / "step_3.json").read_text())
    assert info["step"] == 3 and info["elapsed_s"] > 0


def test_a_low_latency_layout_trains_into_a_package_that_declares_it(
    fake_dataset, tmp_path: Path
) -> None:
    models, run = tmp_path / "models", tmp_path / "run"
    config = TrainConfig(**FAST, steps=1, layout=LOW_LATENCY)
    train(fake_dataset.path, models, "quick", config, run_dir=run, progress=False)
    package = load_package(models / "quick")
    assert package.layout == LOW_LATENCY
    assert package.lookahead_ms == 145.0 and package.lookahead_frames == 3
    # a checkpoint of one layout does not resume as another
    with pytest.raises(CheckpointError, match="feature layout"):
        train(
            fake_dataset.path,
            models,
            "quick",
            TrainConfig(**{**FAST, "steps": 2}),
            run_dir=run,
            resume=True,
            force=True,
            progress=False,
        )


def test_an_existing_package_is_refused_before_training(fake_dataset, tmp_path: Path) -> None:
    (tmp_path / "models" / "alice").mkdir(parents=True)
    with pytest.raises(Exception, match="already exists"):
        train(fake_dataset.path, tmp_path / "models", "alice", TrainConfig(**FAST, steps=1))
    assert not (fake_dataset.path / "training").exists()


def test_missing_dataset_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="nowhere"):
        train(tmp_path / "nowhere", tmp_path / "models", "x", TrainConfig(**FAST, steps=1))


def test_dataset_without_speech_names_the_file(tmp_path: Path, make_fake_dataset) -> None:
    dataset = make_fake_dataset(tmp_path, "mute", with_speech=False)
    with pytest.raises(InvalidInput, match="speech.wav"):
        load_training_data(dataset.path)


def test_dataset_with_a_missing_crop_names_the_frame(fake_dataset, tmp_path: Path) -> None:
    copy = tmp_path / "broken"
    shutil.copytree(fake_dataset.path, copy)
    (copy / "crops" / "000012.jpg").unlink()
    with pytest.raises(InvalidInput, match=r"crop.*missing.*\[12\]"):
        load_training_data(copy)


def test_bad_config_names_the_field() -> None:
    with pytest.raises(InvalidInput, match="held_out_fraction"):
        TrainConfig(held_out_fraction=1.0)
    with pytest.raises(InvalidInput, match=r"lr_decay_fraction must be in \[0, 1\), got 1.5"):
        TrainConfig(lr_decay_fraction=1.5)
    with pytest.raises(ValueError, match="width"):
        TrainConfig(width=0.0)


def test_register_adds_the_train_command() -> None:
    parser = argparse.ArgumentParser()
    register_train(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", "alice", "--steps", "50", "--width", "0.5", "--batch-size", "4", "--resume"]
    )
    assert (args.name, args.steps, args.width, args.batch_size) == ("alice", 50, 0.5, 4)
    assert args.resume and not args.force
    assert args.datasets_dir == Path("datasets") and args.models_dir == Path("models")
    assert args.device == "auto" and callable(args.func)


def test_package_can_show_another_clip_of_the_avatar(
    fake_dataset, tmp_path: Path, make_fake_dataset
) -> None:
    idle = make_fake_dataset(tmp_path, "idle")
    # a clip of the avatar with other boxes: the package must take them, not the training ones
    manifest = json.loads((idle.path / "dataset.json").read_text())
    manifest["bounds"] = [[x0 + 2, y0, x1 + 2, y1] for x0, y0, x1, y1 in manifest["bounds"]]
    (idle.path / "dataset.json").write_text(json.dumps(manifest))
    result = train(
        fake_dataset.path,
        tmp_path / "models",
        "alice",
        TrainConfig(**FAST, steps=1),
        run_dir=tmp_path / "run",
        progress=False,
        avatar_frames=idle.path,
    )
    assert result.package.source["avatar_frames"] == str(idle.path)
    np.testing.assert_array_equal(result.package.bounds, load_training_data(idle.path).bounds)
