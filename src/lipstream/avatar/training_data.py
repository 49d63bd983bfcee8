"""A training dataset in memory: every crop decoded once, the mel windows computed once.

``load_training_data`` reads a dataset made by ``lipstream build`` (checked by
``lipstream.avatar.dataset.load_dataset``) whole: training draws random frames every step and
must not decode JPEGs or recompute audio features to do it. The mel windows are cut exactly as
the streaming feature path cuts them, so the networks train on the features serving computes.
The last frames of the video can be held out of training (``TrainingData.split``) to judge it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lipstream.audio import timeline as tl
from lipstream.audio.features import encoder_windows
from lipstream.audio.files import read_audio_file
from lipstream.audio.mel import StreamingMel
from lipstream.audio.pcm import AudioChunk, as_float_samples
from lipstream.audio.timeline import SYNCTALK2D, FeatureLayout
from lipstream.avatar.dataset import load_dataset
from lipstream.errors import InvalidInput
from lipstream.geometry import CROP_SIZE, CropBox


@dataclass(frozen=True, eq=False)
class TrainingData:
    """A dataset in memory: every crop decoded once, the mel windows computed once."""

    path: Path
    name: str
    crops: np.ndarray  # uint8 [N, 328, 328, 3] BGR
    bounds: np.ndarray  # int32 [N, 4]: xmin, ymin, xmax, ymax in video pixels
    landmarks: np.ndarray  # float32 [N, 68, 2] in video pixels
    speech: AudioChunk  # 16 kHz mono
    mel_windows: np.ndarray  # float32 [W, 1, 80, 16]: every encoder window the frames use
    video_path: Path
    source: dict[str, Any] = field(default_factory=dict)
    layout: FeatureLayout = SYNCTALK2D  # how the frames read the mel windows

    @property
    def frame_count(self) -> int:
        """Frames in the dataset."""
        return len(self.crops)

    def split(self, held_out_fraction: float) -> tuple[range, range]:
        """(training frames, held-out frames): the held-out ones are the last of the video."""
        held = math.ceil(self.frame_count * held_out_fraction) if held_out_fraction > 0 else 0
        train = self.frame_count - held
        if train < 2:
            raise InvalidInput(
                f"dataset {self.path} has {self.frame_count} frames; with "
                f"{held_out_fraction:.0%} held out, fewer than 2 remain to train on"
            )
        return range(train), range(train, self.frame_count)

    def box(self, index: int) -> CropBox:
        """The crop box of frame ``index`` in video pixels."""
        return CropBox.from_bounds(self.bounds[index])


def mel_windows(
    speech: AudioChunk | np.ndarray, frame_count: int, layout: FeatureLayout = SYNCTALK2D
) -> np.ndarray:
    """Every encoder input float32 [W, 1, 80, 16] that frames 0..N-1 read (window j at j).

    The speech is continued by silence (or cut) where frame N-1's lookahead ends, exactly as the
    streaming feature path does, so training sees the features serving computes.
    """
    x = as_float_samples(speech)
    needed = layout.samples_needed(frame_count - 1)
    x = np.concatenate([x[:needed], np.zeros(max(needed - len(x), 0), dtype=x.dtype)])
    mel = StreamingMel().push(x)
    starts = [layout.window_start(j) for j in range(layout.last_window(frame_count - 1) + 1)]
    return encoder_windows(mel, 0, starts)


def load_training_data(dataset_dir: str | Path, layout: FeatureLayout = SYNCTALK2D) -> TrainingData:
    """Read a dataset made by ``lipstream build`` into memory, validated by ``load_dataset``,
    with the mel windows of the feature ``layout`` to train."""
    dataset = load_dataset(dataset_dir)
    count = dataset.frame_count
    crops = np.empty((count, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i in range(count):
        try:
            crops[i] = dataset.read_crop(i)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"crop {dataset.crop_path(i)} does not decode: {exc}") from None
    speech = read_audio_file(dataset.speech_path, sample_rate=tl.SAMPLE_RATE)
    return TrainingData(
        path=dataset.path,
        name=dataset.name,
        crops=crops,
        bounds=np.asarray(dataset.bounds),
        landmarks=dataset.landmarks,
        speech=speech,
        mel_windows=mel_windows(speech, count, layout),
        video_path=dataset.video_path,
        source=dict(dataset.source or {}),
        layout=layout,
    )
