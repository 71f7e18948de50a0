"""Rotation prediction: classify by how much an image was rotated.

Gidaris, Singh, Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018. Official code: github.com/gidariss/FeatureLearningRotNet.

- transform (:func:`rotate`, :meth:`RotationPrediction.prepare`): every image in every angle of
  the set in the same batch (B images -> K*B samples, the paper's recipe), or one random angle
  per image (``mode="random"``). Multiples of 90 degrees are exact (``torch.rot90``,
  counter-clockwise); other angles are interpolated (paper Table 2, 8 rotations). The engine's
  crop and flip have already been applied once per image, so all copies share them.
- head: global average pool -> Linear(channels, K) on the backbone's last stage.
- loss: mean cross-entropy over the K*B samples.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from sslkit import Backbone, Config, PretextTask


def rotation_matrix(angle: float) -> Tensor:
    """The 2x3 ``affine_grid`` matrix (float32, on the CPU) of a counter-clockwise rotation."""
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    # affine_grid maps output coords to input coords (x right, y down, in [-1, 1]). A
    # counter-clockwise rotation on screen (y down) samples the input at R(+theta) of the output.
    return torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]])


def rotate(images: Tensor, angle: float, matrix: Tensor | None = None) -> Tensor:
    """Rotate images [B, C, H, W] counter-clockwise by ``angle`` degrees.

    Multiples of 90 use ``torch.rot90`` (exact; needs H == W for batching, as for any square
    crop). Other angles use bilinear interpolation with zero fill, keeping the size; pass the
    angle's :func:`rotation_matrix` already on the images' device to avoid a host-to-device
    copy (which waits for the GPU) per call.
    """
    quarter = angle / 90.0
    if quarter == round(quarter):
        return torch.rot90(images, k=int(round(quarter)) % 4, dims=(-2, -1))
    if matrix is None:
        matrix = rotation_matrix(angle)
    matrix = matrix.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(matrix.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RotationConfig(Config):
    angles: tuple[float, ...] = Field(
        (0.0, 90.0, 180.0, 270.0), description="rotation set in degrees (counter-clockwise); label i = angles[i]"
    )
    mode: Literal["all", "random"] = Field(
        "all", description="all: every image in every angle per batch; random: one angle per image"
    )

    @field_validator("angles")
    @classmethod
    def _distinct(cls, angles: tuple[float, ...]) -> tuple[float, ...]:
        if len(angles) < 2:
            raise ValueError("needs at least two angles")
        if len({a % 360 for a in angles}) != len(angles):
            raise ValueError("angles must be distinct modulo 360")
        return angles


_EPOCHS_PAPER = {"epochs": 100, "schedule": {"milestones": [30, 60, 80], "gamma": 0.2}}
_SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


class RotationPrediction(PretextTask):
    """RotNet's pretext task (see the module docstring)."""

    Config = RotationConfig
    presets = {
        # ICLR 2018 paper, CIFAR-10: 100 epochs, lr x0.2 after 30/60/80.
        "paper": {**_EPOCHS_PAPER, "optim": _SGD, "data": {"batch_size": 128}},
        # Official code: 200 epochs, lr x0.2 after 60/120/160.
        "repo": {
            "epochs": 200,
            "schedule": {"milestones": [60, 120, 160], "gamma": 0.2},
            "optim": _SGD,
            "data": {"batch_size": 128},
        },
    }
    default_preset = "paper"

    def __init__(self, config: RotationConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: RotationConfig = config
        self.stage = backbone.last_stage.name
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(backbone.last_stage.channels, len(config.angles))
        )
        # The interpolation matrices of all angles, moved with the task (.to(device)): no
        # host-to-device copy per step. Not persistent: derived from the config, not learned.
        self.register_buffer("matrices", torch.stack([rotation_matrix(a) for a in config.angles]), persistent=False)

    def prepare(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """images [B, C, H, W] -> inputs [K*B or B, C, H, W], targets (angle indices)."""
        angles = self.config.angles
        b = images.shape[0]
        if self.config.mode == "all":
            # angle-major: [K*B, C, H, W]
            inputs = torch.cat([rotate(images, a, m) for a, m in zip(angles, self.matrices, strict=True)])
            # [0]*B + [1]*B + ...: integer division, not repeat_interleave (which can size its output on the host)
            targets = torch.arange(len(angles) * b, device=images.device) // b
            return inputs, targets
        targets = torch.randint(0, len(angles), (b,), generator=generator, device=images.device)
        inputs = images
        # Every image in every angle, then a per-sample select: a boolean-mask assignment would
        # read the mask's count back from the GPU (a sync per angle per step). Rotation is per
        # image, so the chosen values are the same; a loop over the K angles, not over samples.
        for i, (a, m) in enumerate(zip(angles, self.matrices, strict=True)):
            inputs = torch.where((targets == i)[:, None, None, None], rotate(images, a, m), inputs)
        return inputs, targets

    def forward(self, backbone: Backbone, inputs: Tensor) -> Tensor:
        return self.head(backbone(inputs, [self.stage])[self.stage])  # [M, K]
