"""The lip-sync generator: a U-Net over a 6x320x320 face crop, driven by 32x16x16 audio features.

Parameter names, shapes and forward semantics match SyncTalk_2D's ``unet_328`` generator, so a
width-1.0 network loads one of its checkpoints unchanged. A width multiplier scales every internal
channel count for lighter, faster variants; the input (6), audio (32x16x16) and output (3)
channels never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lipstream.audio.timeline import FRAME_FEATURE_SHAPE


@dataclass(frozen=True)
class GeneratorConfig:
    """How wide the generator is: 1.0 is SyncTalk_2D's network, 0.5 and 0.25 are lighter."""

    width: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.width <= 1.0:
            raise ValueError(f"generator width must be in (0, 1], got {self.width}")

    def channels(self, base: int) -> int:
        """The channel count standing for ``base`` channels of the full-width network."""
        return max(4, round(base * self.width))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project, each batch-normalised."""

    def __init__(
        self, inp: int, oup: int, stride: int = 1, residual: bool = False, expand: int = 2
    ):
        super().__init__()
        if residual and (inp != oup or stride != 1):
            raise ValueError("a residual block needs equal in/out channels and stride 1")
        hidden = inp * expand
        self.residual = residual
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class DoubleConvDW(nn.Module):
    """Two inverted-residual blocks: the first may stride, the second is residual."""

    def __init__(self, inp: int, oup: int, stride: int = 1):
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(inp, oup, stride),
            InvertedResidual(oup, oup, 1, residual=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class InConv(nn.Module):
    def __init__(self, inp: int, oup: int):
        super().__init__()
        self.inconv = nn.Sequential(InvertedResidual(inp, oup))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, inp: int, oup: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(DoubleConvDW(inp, oup, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear x2 upsampling (align_corners), concatenation with the skip, then DoubleConvDW."""

    def __init__(self, inp: int, oup: int):
        super().__init__()
        self.conv = DoubleConvDW(inp, oup)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        dy = skip.shape[2] - x.shape[2]
        dx = skip.shape[3] - x.shape[3]
        if dy or dx:  # only for inputs whose side is not a multiple of 32
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x, skip], dim=1))


class OutConv(nn.Module):
    def __init__(self, inp: int, oup: int):
        super().__init__()
        self.conv = nn.Conv2d(inp, oup, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AudioConv(nn.Module):
    """Maps the 32x16x16 audio feature block to a bottleneck-sized 10x10 map."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        c = cfg.channels
        self.conv1 = InvertedResidual(FRAME_FEATURE_SHAPE[0], c(64))
        self.conv2 = InvertedResidual(c(64), c(128))
        self.conv3 = nn.Conv2d(c(128), c(256), 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(c(256))
        self.conv4 = InvertedResidual(c(256), c(256), residual=True)
        self.conv5 = nn.Conv2d(c(256), c(512), 3, 2, 3)
        self.bn5 = nn.BatchNorm2d(c(512))
        self.relu = nn.ReLU()
        self.conv6 = InvertedResidual(c(512), c(512), residual=True)
        self.conv7 = InvertedResidual(c(512), c(512), residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # shapes for width 1.0; C(n) is n scaled by the width
        x = self.conv2(self.conv1(x))  # [N,32,16,16] -> [N,C(128),16,16]
        x = self.relu(self.bn3(self.conv3(x)))  # -> [N,C(256),16,16]
        x = self.conv4(x)  # residual, same shape
        x = self.relu(self.bn5(self.conv5(x)))  # stride 2, padding 3: -> [N,C(512),10,10]
        return self.conv7(self.conv6(x))  # residual blocks: [N,C(512),10,10]


class Generator(nn.Module):
    """``forward(image, audio)``: image [N,6,320,320] (reference BGR, masked BGR, in [0,1]),
    audio [N,32,16,16] -> mouth region [N,3,320,320] BGR in (0,1)."""

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        c = cfg.channels
        self.inc = InConv(6, c(32))
        self.down1 = Down(c(32), c(32))
        self.down2 = Down(c(32), c(64))
        self.down3 = Down(c(64), c(128))
        self.down4 = Down(c(128), c(256))
        self.down5 = Down(c(256), c(512))
        self.audio_model = AudioConv(cfg)
        self.fuse_conv = nn.Sequential(
            DoubleConvDW(c(512) * 2, c(512)), DoubleConvDW(c(512), c(256))
        )
        self.up1 = Up(c(256) * 2, c(128))
        self.up2 = Up(c(128) * 2, c(64))
        self.up3 = Up(c(64) * 2, c(32))
        self.up4 = Up(c(32) * 2, c(32))
        self.up5 = Up(c(32) * 2, c(16))
        self.outc = OutConv(c(16), 3)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        # shapes for a 320x320 crop; C(n) is n channels scaled by the width (C(n) = n at 1.0)
        x1 = self.inc(image)  # [N,6,320,320] -> [N,C(32),320,320]
        x2 = self.down1(x1)  # -> [N,C(32),160,160]
        x3 = self.down2(x2)  # -> [N,C(64),80,80]
        x4 = self.down3(x3)  # -> [N,C(128),40,40]
        x5 = self.down4(x4)  # -> [N,C(256),20,20]
        x6 = self.down5(x5)  # -> [N,C(512),10,10]
        a = self.audio_model(audio)  # [N,32,16,16] -> [N,C(512),10,10]
        x6 = self.fuse_conv(torch.cat([x6, a], dim=1))  # [N,2C(512),10,10] -> [N,C(256),10,10]
        x = self.up1(x6, x5)  # x2 and skip: [N,2C(256),20,20] -> [N,C(128),20,20]
        x = self.up2(x, x4)  # -> [N,C(64),40,40]
        x = self.up3(x, x3)  # -> [N,C(32),80,80]
        x = self.up4(x, x2)  # -> [N,C(32),160,160]
        x = self.up5(x, x1)  # -> [N,C(16),320,320]
        return torch.sigmoid(self.outc(x))  # [N,3,320,320] in (0,1)
