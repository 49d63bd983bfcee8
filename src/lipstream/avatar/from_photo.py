"""An avatar from one portrait: a talking clip rendered from the photo, then the video pipeline.

The photo is made to speak varied sentences by the viseme animator (``talking_clip.py``, which
warps it with ``face_rig.py``); the clip is turned into a training dataset like any talking-head
video (``dataset.py``). The clip ends with sentences spoken nowhere before, so the held-out tail
that training never sees is a fair test. A second, silent clip of the portrait at rest becomes
the avatar's own video.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from lipstream.errors import InvalidInput

# The last sentences are kept for the held-out tail: the model never hears them in training.
HELD_OUT_SENTENCE_COUNT = 6
# The tail must cover the last 10% of frames that training holds out, with a margin.
TAIL_FRACTION = 0.12
IDLE_VIDEO = "idle.mp4"
REFERENCE_OPENING = "reference_opening.npy"


def read_portrait(photo_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The photo (BGR) and its 68 face landmarks; a clear error when either is missing."""
    from lipstream.avatar.landmarks import FaceLandmarker

    path = Path(photo_path)
    if not path.is_file():
        raise InvalidInput(f"photo not found: {path}")
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise InvalidInput(f"{path} is not a readable image (JPEG, PNG, WebP, BMP, TIFF)")
    points = FaceLandmarker().detect(photo)
    if points is None:
        raise InvalidInput(f"no face found in {path}: use a frontal portrait, face at least 80 px")
    return photo, points


def make_photo_dataset(
    photo_path: str | Path,
    name: str,
    datasets_dir: str | Path = "datasets",
    *,
    seconds: float = 180.0,
    idle_seconds: float = 10.0,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Render the talking and idle clips of a portrait and build dataset ``datasets_dir/name``.

    Beside the usual dataset files it holds ``reference_opening.npy`` (the mouth opening the
    animator drew in every frame: ground truth for the sync score) and ``idle.mp4``.
    """
    from lipstream.avatar.dataset import build_dataset, load_dataset
    from lipstream.avatar.talking_clip import SENTENCES, render_idle_video, render_talking_video

    photo, points = read_portrait(photo_path)
    datasets = Path(datasets_dir)
    datasets.mkdir(parents=True, exist_ok=True)
    train_sentences = SENTENCES[:-HELD_OUT_SENTENCE_COUNT]
    held_out = SENTENCES[-HELD_OUT_SENTENCE_COUNT:]
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=datasets) as tmp:
        work = Path(tmp)
        talk = render_talking_video(
            photo,
            points,
            work / "talk.mp4",
            train_sentences,
            seconds=seconds,
            seed=seed,
            progress=_bar("render talking clip", progress),
            tail_sentences=held_out,
            tail_seconds=seconds * TAIL_FRACTION / (1 - TAIL_FRACTION),
        )
        idle = render_idle_video(photo, points, work / IDLE_VIDEO, idle_seconds, seed)
        dataset = build_dataset(talk.video, name, datasets, progress, force=force)
        loaded = load_dataset(dataset)
        opening = np.load(talk.opening)
        # The builder drops faceless frames at the ends only; a rendered portrait has none.
        if loaded.frame_count != len(opening):
            raise InvalidInput(
                f"the rendered clip has {len(opening)} frames but its dataset {loaded.frame_count}"
            )
        np.save(dataset / REFERENCE_OPENING, opening)
        shutil.copyfile(idle.video, dataset / IDLE_VIDEO)
    return dataset


def _bar(description: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="frame")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done == total:
            bar.close()

    return update


def idle_dataset_name(name: str) -> str:
    """The dataset of an avatar's idle clip, beside its training dataset."""
    return f"{name}-idle"


def avatar_from_photo(
    photo_path: str | Path,
    name: str,
    *,
    datasets_dir: str | Path = "datasets",
    models_dir: str | Path = "models",
    seconds: float = 180.0,
    idle_seconds: float = 10.0,
    config=None,
    resume: bool = False,
    force: bool = False,
    serving_only: bool = False,
    progress: bool = True,
):
    """The whole pipeline: clips, datasets, training, package, ONNX export; the package.

    With ``resume``, existing datasets are reused and training continues from its newest
    checkpoint. ``serving_only`` drops the PyTorch weights after export (a smaller package
    that ONNX Runtime serves; it can no longer be re-exported).
    """
    from lipstream.avatar.dataset import build_dataset
    from lipstream.avatar.train import train
    from lipstream.model.package import check_name
    from lipstream.model.package_export import export_package
    from lipstream.model.package_writer import remove_weights

    check_name(name)
    datasets = Path(datasets_dir)
    dataset = datasets / name
    if not (resume and dataset.is_dir()):
        make_photo_dataset(
            photo_path,
            name,
            datasets,
            seconds=seconds,
            idle_seconds=idle_seconds,
            force=force,
            progress=progress,
        )
    idle = datasets / idle_dataset_name(name)
    if not (resume and idle.is_dir()):
        build_dataset(dataset / IDLE_VIDEO, idle.name, datasets, progress, force=True)
    result = train(
        dataset,
        models_dir,
        name,
        config,
        resume=resume,
        force=force or resume,
        progress=progress,
        avatar_frames=idle,
    )
    package = export_package(result.package.path)
    if serving_only:
        package = remove_weights(package.path, "pytorch")
    return package
