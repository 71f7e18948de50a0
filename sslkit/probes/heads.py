"""Probe heads from the RotNet paper's evaluation protocols (methods.md 1.4).

Gidaris, Singh, Komodakis, ICLR 2018: the "non-linear" probe of Tables 1-2 (``mlp``) and a
plain linear classifier (``linear``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from ..interfaces import Probe, ProbeConfig


class LinearConfig(ProbeConfig):
    pool: Literal["avg", "flatten"] = Field("avg", description="global average pool, or flatten the map")


class LinearProbe(Probe):
    """Global average pool (or flatten) -> Linear(classes)."""

    Config = LinearConfig

    def __init__(self, config: LinearConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(config, feature_shape, num_classes)
        pool = nn.AdaptiveAvgPool2d(1) if config.pool == "avg" and len(feature_shape) == 3 else nn.Identity()
        in_features = feature_shape[0] if config.pool == "avg" else math.prod(feature_shape)
        self.net = nn.Sequential(pool, nn.Flatten(), nn.Linear(in_features, num_classes))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class MLPConfig(ProbeConfig):
    hidden: int = Field(200, ge=1)


class MLPProbe(Probe):
    """The paper's non-linear probe: flatten -> Linear(200, no bias) -> BN1d -> ReLU ->
    Linear(200, no bias) -> BN1d -> ReLU -> Linear(classes). No dropout.

    (The official code uses BatchNorm2d on flat features, which fails on current PyTorch.)
    """

    Config = MLPConfig

    def __init__(self, config: MLPConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(config, feature_shape, num_classes)
        h = config.hidden
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(feature_shape), h, bias=False),
            nn.BatchNorm1d(h),
            nn.ReLU(inplace=True),
            nn.Linear(h, h, bias=False),
            nn.BatchNorm1d(h),
            nn.ReLU(inplace=True),
            nn.Linear(h, num_classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)
