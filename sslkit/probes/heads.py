"""Probe heads from the RotNet paper's evaluation protocols (Gidaris et al., ICLR 2018, sec. 3.1).

Gidaris, Singh, Komodakis, ICLR 2018: the "non-linear" probe of Tables 1-2 (``mlp``), the
"conv" probe of Table 3 and Figure 5b (``conv``: a fresh NIN block3 on a frozen stage) and a plain
linear classifier (``linear``). Each config's defaults are the paper's recipe for that probe.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from ..backbones.nin import conv_unit
from ..errors import ConfigError
from ..interfaces import Probe, ProbeConfig


class LinearConfig(ProbeConfig):
    pool: Literal["avg", "flatten"] = Field("avg", description="global average pool, or flatten the map")
    norm: bool = Field(
        False,
        description="BatchNorm without affine parameters before the classifier (MAE's and MoCo v3's linear "
        "probe): features of any scale train at the same lr, and the probe stays linear",
    )


class ScaleFreeNorm(nn.Module):
    """BatchNorm1d without affine parameters whose epsilon follows the features' scale.

    A random-init NIN's pooled block4 features vary by ~1e-6 per dimension (each block shrinks
    them ~25x), so BatchNorm's fixed eps = 1e-5 swamps their variance, every output is ~0 and the
    linear probe cannot train (chance accuracy where kNN on the same features gets 30%). Here eps
    is 1e-5 of the batch's mean variance over dimensions: the same standardisation at any scale,
    and dimensions far quieter than the rest still stay near zero.
    """

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.running_mean: Tensor
        self.running_var: Tensor
        self.batches: Tensor
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():  # the first batch sets the running statistics: 0 and 1 are no scale
                weight = 1.0 if int(self.batches) == 0 else self.momentum
                self.batches.add_(1)
                self.running_mean.lerp_(mean, weight)
                self.running_var.lerp_(x.var(0, unbiased=True) if len(x) > 1 else var, weight)
        else:
            mean, var = self.running_mean, self.running_var
        eps = 1e-5 * var.mean().clamp_min(torch.finfo(x.dtype).tiny)
        return (x - mean) / torch.sqrt(var + eps)


class LinearProbe(Probe):
    """Global average pool (or flatten) -> [BatchNorm without affine, :class:`ScaleFreeNorm`] ->
    Linear(classes)."""

    Config = LinearConfig

    def __init__(self, config: LinearConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(config, feature_shape, num_classes)
        pool = nn.AdaptiveAvgPool2d(1) if config.pool == "avg" and len(feature_shape) == 3 else nn.Identity()
        in_features = feature_shape[0] if config.pool == "avg" else math.prod(feature_shape)
        norm = ScaleFreeNorm(in_features) if config.norm else nn.Identity()
        self.net = nn.Sequential(pool, nn.Flatten(), norm, nn.Linear(in_features, num_classes))

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)


class MLPConfig(ProbeConfig):
    """Paper: 100 epochs, lr 0.1 / 0.02 / 0.004 / 0.0008 from epochs 0 / 20 / 40 / 45."""

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


class ConvConfig(ProbeConfig):
    """Paper (Table 3): 100 epochs, lr 0.1 x0.2 after epochs 35, 70, 85."""

    milestones: tuple[int, ...] = (35, 70, 85)
    channels: int | None = Field(
        None, ge=1, description="width of the fresh block (default: the stage's channels, 192 on full NIN)"
    )


class ConvProbe(Probe):
    """A fresh NIN block3 on a frozen stage: Conv3x3 -> Conv1x1 -> Conv1x1 (each conv-BN-ReLU,
    no conv bias), global average pool, Linear(channels, classes). With the default width the
    block has the stage's own channel count, so a narrow encoder gets a proportionally narrow head.
    """

    Config = ConvConfig

    def __init__(self, config: ConvConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(config, feature_shape, num_classes)
        if len(feature_shape) != 3:
            raise ConfigError(f"the conv probe needs a feature map (C, H, W), got shape {tuple(feature_shape)}")
        c_in = feature_shape[0]
        c = config.channels or c_in
        self.net = nn.Sequential(
            conv_unit(c_in, c, 3),
            conv_unit(c, c, 1),
            conv_unit(c, c, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c, num_classes),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)
