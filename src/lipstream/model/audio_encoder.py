"""The AVE audio encoder: one [80 mel x 16 frame] window -> 512 features for one video frame.

Layer names and shapes match SyncTalk_2D's audio-visual encoder (a Wav2Lip/SyncNet-style conv
stack); its checkpoint files hold the keys without the ``audio_encoder.`` prefix.
"""

from __future__ import annotations

import torch
from torch import nn

MEL_WINDOW_SHAPE = (1, 80, 16)
FEATURE_SIZE = 512


class ConvUnit(nn.Module):
    """Conv2d (with bias) -> BatchNorm -> (+ input when residual) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout)
        )
        self.residual = residual
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


# (cin, cout, kernel, stride, padding, residual) for the 13 units, 80x16 -> 1x1
_UNITS = [
    (1, 32, 3, 1, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
]


class AudioEncoder(nn.Module):
    """``forward(mel)``: mel windows [N,1,80,16] -> features [N,512] (non-negative)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvUnit(*u) for u in _UNITS))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder(mel).flatten(1)
