"""Batched augmentation on the device: one kernel per batch, no per-sample Python.

Same operations as the RotNet code's torchvision transforms (random 32x32 crop of the image
zero-padded by 4, horizontal flip with p=0.5, normalisation), applied to a whole batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(images: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """images [B, C, H, W] (any dtype) -> same shape: a random crop of the zero-padded image,
    then a horizontal flip with probability 1/2, drawn independently per image."""
    b, _, h, w = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))  # zeros, as the paper's code
        oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=device)
        ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=device)
        rows = oy[:, None] + torch.arange(h, device=device)  # [B, H]
        cols = ox[:, None] + torch.arange(w, device=device)  # [B, W]
        batch = torch.arange(b, device=device)[:, None, None]
        # Advanced indexing around a slice puts the indexed dims first: [B, H, W, C].
        images = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(b, generator=generator, device=device) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return images.contiguous()


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 [B, C, H, W] in 0..255 -> float32 (x/255 - mean) / std."""
    m = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float().div_(255) - m).div_(s)
