"""Network-In-Network for 32x32 images, as used by RotNet.

Gidaris, Singh, Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018 (official code: github.com/gidariss/FeatureLearningRotNet).

Unit: Conv(k, stride 1, padding (k-1)//2, no bias) -> BatchNorm -> ReLU.

    block1: 5x5->192, 1x1->160, 1x1->96, MaxPool(3, 2, 1)   32x32 -> 96 x 16 x 16
    block2: 5x5->192, 1x1->192, 1x1->192, AvgPool(3, 2, 1)  -> 192 x 8 x 8
    block3..N: 3x3->192, 1x1->192, 1x1->192                 -> 192 x 8 x 8
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..interfaces import Backbone, Config, Stage


def conv_unit(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=1, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class NINConfig(Config):
    blocks: int = Field(4, ge=3, description="conv blocks (the paper: 3, 4 or 5)")
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier (0.25 for CPU-sized runs)")
    in_channels: int = Field(3, ge=1, description="image channels: 3 for RGB data, 1 for grayscale")


class NetworkInNetwork(Backbone):
    """NIN with ``blocks`` conv blocks; stages ``block1`` .. ``blockN``."""

    Config = NINConfig

    def __init__(self, config: NINConfig) -> None:
        super().__init__(config)

        def ch(c: int) -> int:
            # The width multiplier keeps at least 8 channels so narrow models stay trainable.
            return max(8, round(c * config.width))

        c96, c160, c192 = ch(96), ch(160), ch(192)
        self.blocks["block1"] = nn.Sequential(
            conv_unit(config.in_channels, c192, 5),
            conv_unit(c192, c160, 1),
            conv_unit(c160, c96, 1),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.blocks["block2"] = nn.Sequential(
            conv_unit(c96, c192, 5),
            conv_unit(c192, c192, 1),
            conv_unit(c192, c192, 1),
            # PyTorch's default count_include_pad=True, as in the official code.
            nn.AvgPool2d(3, stride=2, padding=1),
        )
        for i in range(3, config.blocks + 1):
            self.blocks[f"block{i}"] = nn.Sequential(
                conv_unit(c192, c192, 3),
                conv_unit(c192, c192, 1),
                conv_unit(c192, c192, 1),
            )
        self.stages = (Stage("block1", c96, 2), Stage("block2", c192, 4)) + tuple(
            Stage(f"block{i}", c192, 4) for i in range(3, config.blocks + 1)
        )
