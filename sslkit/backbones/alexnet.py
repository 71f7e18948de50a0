"""AlexNet-style trunk for 32-96 px inputs (context prediction's patches), with named stages.

Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012: conv1 11x11/4 -> 96, conv2 5x5 -> 256, conv3 3x3 -> 384,
conv4 3x3 -> 384, conv5 3x3 -> 256, max-pools after conv1, conv2 and conv5. As in Doersch et al.
(ICCV 2015, sec. 4), BatchNorm follows every conv (no LRN, no grouping); from conv3 on it has no
learned scale/shift, which they needed to stop the siamese network collapsing to uniform
predictions.

Paddings are chosen so every stage is exactly 1/stride of an input whose side is a multiple of
32 (32 -> 1 x 1 at conv5, 64 -> 2 x 2, 96 -> 3 x 3): conv1 11x11/4 pad 5, pools 3/2 pad 1.

    stage  layers                                  channels  stride
    conv1  conv 11x11/4, BN, ReLU, maxpool 3/2      96        8
    conv2  conv 5x5, BN, ReLU, maxpool 3/2          256       16
    conv3  conv 3x3, BN (no affine), ReLU           384       16
    conv4  conv 3x3, BN (no affine), ReLU           384       16
    conv5  conv 3x3, BN (no affine), ReLU, maxpool  256       32
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..interfaces import Backbone, Config, Stage


def _unit(c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, affine=affine),
        nn.ReLU(inplace=True),
    ]


class AlexNetConfig(Config):
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier (0.25 for CPU-sized runs)")
    in_channels: int = Field(3, ge=1, description="image channels: 3 for RGB data, 1 for grayscale")


class AlexNet(Backbone):
    """AlexNet conv1..conv5 with BatchNorm; stages ``conv1`` .. ``conv5`` (see the module docstring)."""

    Config = AlexNetConfig

    def __init__(self, config: AlexNetConfig) -> None:
        super().__init__(config)

        def ch(c: int) -> int:
            return max(8, round(c * config.width))

        c1, c2, c3, c4, c5 = ch(96), ch(256), ch(384), ch(384), ch(256)
        pool = lambda: nn.MaxPool2d(3, stride=2, padding=1)  # noqa: E731
        self.blocks["conv1"] = nn.Sequential(*_unit(config.in_channels, c1, 11, stride=4), pool())
        self.blocks["conv2"] = nn.Sequential(*_unit(c1, c2, 5), pool())
        self.blocks["conv3"] = nn.Sequential(*_unit(c2, c3, 3, affine=False))
        self.blocks["conv4"] = nn.Sequential(*_unit(c3, c4, 3, affine=False))
        self.blocks["conv5"] = nn.Sequential(*_unit(c4, c5, 3, affine=False), pool())
        self.stages = (
            Stage("conv1", c1, 8),
            Stage("conv2", c2, 16),
            Stage("conv3", c3, 16),
            Stage("conv4", c4, 16),
            Stage("conv5", c5, 32),
        )
