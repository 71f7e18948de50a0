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
    then a horizontal flip with probability 1/2, drawn independently per image.

    Both are one ``gather`` over the flattened padded images: crop offsets shift the source
    index, a flip reverses the column index. (Advanced indexing or ``torch.where`` over a flipped
    copy were 10-30x slower on CPU.)
    """
    b, c, h, w = images.shape
    device = images.device
    if padding == 0 and not flip:
        return images
    p = padding
    padded = F.pad(images, (p, p, p, p)) if p else images  # zeros, as the paper's code
    wp = w + 2 * p
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=device) if p else torch.zeros(b, dtype=torch.long, device=device)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=device) if p else torch.zeros(b, dtype=torch.long, device=device)
    cols = torch.arange(w, device=device).expand(b, w)  # [B, W]
    if flip:
        flipped = torch.rand(b, generator=generator, device=device) < 0.5
        cols = torch.where(flipped[:, None], w - 1 - cols, cols)
    rows = torch.arange(h, device=device)
    # Source index of output pixel (i, j) of image n: (oy_n + i) * wp + ox_n + cols_n[j].
    index = (oy[:, None, None] + rows[None, :, None]) * wp + (ox[:, None, None] + cols[:, None, :])  # [B, H, W]
    out = padded.flatten(2).gather(2, index.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 [B, C, H, W] in 0..255 -> float32 (x/255 - mean) / std."""
    m = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.float().div_(255) - m).div_(s)
