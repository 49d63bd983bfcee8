"""The model registry: loading the models folder, reloading, and keeping paths inside it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lipstream.errors import InvalidInput, ModelNotFound, PackageError
from lipstream.model.engine import OpenedModel
from lipstream.model.package import load_package
from lipstream.service.registry import ModelRegistry


def test_the_models_folder_loads_and_broken_packages_are_skipped(fake_registry, caplog):
    errors = fake_registry.load_all()
    assert fake_registry.names() == ["demo"]
    assert set(errors) == {"broken"} and "format must be" in errors["broken"]
    assert "skipped model package broken" in caplog.text
    info = fake_registry.get("demo").info
    assert (info.name, info.frame_count, info.fps, info.runtime) == ("demo", 250, 25, "fake")
    assert (info.feature_window_frames, info.feature_lookahead_frames) == (16, 7)
    assert info.feature_sample_rate == 16000


def test_unknown_models_name_the_loaded_ones(fake_registry):
    fake_registry.load("demo")
    with pytest.raises(ModelNotFound, match=r"'ghost' is not loaded \(loaded models: demo\)"):
        fake_registry.get("ghost")
    with pytest.raises(ModelNotFound, match="no model package 'ghost'.*demo"):
        fake_registry.load("ghost")


@pytest.mark.parametrize(
    ("name", "path", "problem"),
    [
        ("../demo", "", InvalidInput),
        ("demo", "../../etc", InvalidInput),
        ("demo", "/etc", InvalidInput),
        ("demo", "escape", InvalidInput),  # a symlink leading out of the folder
        ("demo", ".", InvalidInput),  # the models folder itself
        ("demo", "demo\0", InvalidInput),
        ("demo", "notes", PackageError),  # inside, but not a package
    ],
)
def test_package_paths_stay_inside_the_models_folder(fake_registry, name, path, problem):
    with pytest.raises(problem):
        fake_registry.load(name, path)
    assert fake_registry.names() == []


def test_a_reload_swaps_the_model_and_a_failed_one_keeps_the_old(service_models, new_runtime):
    opened: list[OpenedModel] = []
    fail = threading.Event()

    def opener(folder, runtime, device):
        if fail.is_set():
            raise RuntimeError("the graph does not parse")
        model = OpenedModel(load_package(folder), new_runtime(), zero_features, "fake")
        opened.append(model)
        return model

    registry = ModelRegistry(service_models, opener=opener)
    first = registry.load("demo")
    second = registry.load("demo", "demo")
    assert registry.get("demo") is second and second.model is not first.model
    fail.set()
    with pytest.raises(PackageError, match="failed to load: the graph does not parse"):
        registry.load("demo")
    assert registry.get("demo") is second


def test_a_model_failing_its_warm_up_is_not_served(service_models, new_runtime):
    def opener(folder, runtime, device):
        return OpenedModel(load_package(folder), new_runtime(), lambda w: w[:, 0, 0], "fake")

    registry = ModelRegistry(service_models, opener=opener)
    with pytest.raises(PackageError, match="failed its warm-up run: the audio encoder returned"):
        registry.load("demo")
    assert registry.names() == []


def zero_features(windows: np.ndarray) -> np.ndarray:
    return np.zeros((len(windows), 512), np.float32)
