"""ResNet-18 from torchvision, with named stages and an optional small-image stem.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016. With ``small_stem`` (the
usual CIFAR variant) the 7x7/2 conv and max-pool are replaced by a 3x3/1 conv, so 32x32 inputs
keep enough resolution.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn
from torchvision.models import resnet18

from ..interfaces import Backbone, Config, Stage


class ResNetConfig(Config):
    small_stem: bool = Field(True, description="3x3/1 stem without max-pool, for 32-96 px images")
    in_channels: int = Field(3, ge=1, description="image channels: 3 for RGB data, 1 for grayscale")


class ResNet18(Backbone):
    """torchvision ResNet-18 trunk; stages ``stem``, ``layer1`` .. ``layer4``.

    :meth:`torchvision_state_dict` renames the weights so they load into
    ``torchvision.models.resnet18`` (with ``fc`` removed, or ``strict=False``).
    """

    Config = ResNetConfig

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        net = resnet18(weights=None)
        if config.small_stem:
            net.conv1 = nn.Conv2d(config.in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif config.in_channels != 3:
            net.conv1 = nn.Conv2d(config.in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.blocks["stem"] = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            self.blocks[name] = getattr(net, name)
        s = 1 if config.small_stem else 4
        self.stages = (
            Stage("stem", 64, s),
            Stage("layer1", 64, s),
            Stage("layer2", 128, 2 * s),
            Stage("layer3", 256, 4 * s),
            Stage("layer4", 512, 8 * s),
        )

    def native_state_dict(self) -> dict:
        """The weights under torchvision's own key names (``torchvision.models.resnet18``)."""
        return self.torchvision_state_dict()

    def torchvision_state_dict(self) -> dict:
        rename = {"blocks.stem.0.": "conv1.", "blocks.stem.1.": "bn1.", "blocks.": ""}
        out = {}
        for key, value in self.state_dict().items():
            for old, new in rename.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            out[key] = value
        return out
