"""Batched augmentation on the device: one kernel per batch, no per-sample Python.

Two ways to crop, both with parameters drawn per image:

- ``pad_crop``: the RotNet code's CIFAR transform (random crop of the image zero-padded by 4,
  horizontal flip with p=0.5) for images that already have the training size;
- ``random_resized`` / ``center``: a box per image (random-resized crop as in torchvision's
  ``RandomResizedCrop``, or the central square) resampled to the training size with
  ``roi_align``, for images of any size, padded into one batch tensor. torchvision's v2
  transforms draw one box for a whole batch; here every image gets its own.

Randomness is drawn for the *global* batch and sliced (``total``/``offset``), so N processes
each augmenting their share see exactly the crops one process would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(
    images: Tensor, padding: int, flip: bool, generator: torch.Generator, total: int | None = None, offset: int = 0
) -> Tensor:
    """images [B, C, H, W] (any dtype) -> same shape: a random crop of the zero-padded image,
    then a horizontal flip with probability 1/2, drawn independently per image.

    Draws for ``total`` images (default B) and uses rows ``offset:offset+B``. Both operations are
    one ``gather`` over the flattened padded images: crop offsets shift the source index, a flip
    reverses the column index. (Advanced indexing or ``torch.where`` over a flipped copy were
    10-30x slower on CPU.)
    """
    b, c, h, w = images.shape
    n = b if total is None else total
    device = images.device
    if padding == 0 and not flip:
        return images
    p = padding
    padded = F.pad(images, (p, p, p, p)) if p else images  # zeros, as the paper's code
    wp = w + 2 * p
    zeros = torch.zeros(b, dtype=torch.long, device=device)
    oy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=device)[offset : offset + b] if p else zeros
    ox = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=device)[offset : offset + b] if p else zeros
    cols = torch.arange(w, device=device).expand(b, w)  # [B, W]
    if flip:
        flipped = torch.rand(n, generator=generator, device=device)[offset : offset + b] < 0.5
        cols = torch.where(flipped[:, None], w - 1 - cols, cols)
    rows = torch.arange(h, device=device)
    # Source index of output pixel (i, j) of image n: (oy_n + i) * wp + ox_n + cols_n[j].
    index = (oy[:, None, None] + rows[None, :, None]) * wp + (ox[:, None, None] + cols[:, None, :])  # [B, H, W]
    out = padded.flatten(2).gather(2, index.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w)


def random_resized_boxes(
    sizes: Tensor,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator,
    total: int | None = None,
    offset: int = 0,
    tries: int = 10,
) -> Tensor:
    """sizes [B, 2] (h, w) -> boxes [B, 4] (x1, y1, x2, y2): torchvision's RandomResizedCrop
    sampling, vectorised. ``tries`` candidates per image; the first that fits is taken, else
    the central crop with the ratio clamped to ``ratio`` (torchvision's fallback)."""
    b = sizes.shape[0]
    n = b if total is None else total
    device = sizes.device
    h, w = sizes[:, 0].double(), sizes[:, 1].double()
    area = (h * w)[:, None]
    u = torch.rand(n, tries, 4, generator=generator, device=device, dtype=torch.float64)[offset : offset + b]
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = torch.exp(log_r)
    cw = torch.sqrt(target * aspect).round()
    ch = torch.sqrt(target / aspect).round()
    ok = (cw > 0) & (ch > 0) & (cw <= w[:, None]) & (ch <= h[:, None])  # [B, tries]
    first = ok.double().argmax(1)  # the first candidate that fits (0 when none does)
    pick = lambda t: t.gather(1, first[:, None])[:, 0]  # noqa: E731
    cw, ch, ux, uy = pick(cw), pick(ch), pick(u[..., 2]), pick(u[..., 3])
    # Fallback (no candidate fits): the whole image, cropped to the nearest allowed ratio.
    in_ratio = w / h
    fw = torch.where(in_ratio < ratio[0], w, torch.where(in_ratio > ratio[1], (h * ratio[1]).round(), w))
    fh = torch.where(in_ratio < ratio[0], (w / ratio[0]).round(), h)
    fits = ok.any(1)
    cw, ch = torch.where(fits, cw, fw), torch.where(fits, ch, fh)
    x1 = torch.where(fits, ((w - cw) * ux).floor(), ((w - cw) / 2).floor())
    y1 = torch.where(fits, ((h - ch) * uy).floor(), ((h - ch) / 2).floor())
    return torch.stack([x1, y1, x1 + cw, y1 + ch], 1).float()


def center_boxes(sizes: Tensor) -> Tensor:
    """sizes [B, 2] (h, w) -> the central square of each image [B, 4] (x1, y1, x2, y2)."""
    h, w = sizes[:, 0].float(), sizes[:, 1].float()
    side = torch.minimum(h, w)
    x1, y1 = ((w - side) / 2).floor(), ((h - side) / 2).floor()
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def resample_boxes(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """images [B, C, H, W] (uint8 or float, 0..255), boxes [B, 4] -> float [B, C, size, size].

    ``roi_align`` averages ceil(box/size) samples per output pixel, so shrinking a large box is
    anti-aliased; growing a small one is bilinear.
    """
    from torchvision.ops import roi_align

    b = images.shape[0]
    index = torch.arange(b, device=images.device, dtype=boxes.dtype)[:, None]
    return roi_align(images.float(), torch.cat([index, boxes.to(images.device)], 1), (size, size), 1.0, -1, True)


def flip_some(images: Tensor, generator: torch.Generator, total: int | None = None, offset: int = 0) -> Tensor:
    """Horizontal flip with probability 1/2 per image (drawn for ``total``, rows ``offset:``)."""
    b = images.shape[0]
    n = b if total is None else total
    flipped = torch.rand(n, generator=generator, device=images.device)[offset : offset + b] < 0.5
    return torch.where(flipped[:, None, None, None], images.flip(-1), images)


@dataclass(frozen=True)
class Crop:
    """How the loop crops a batch to ``size`` x ``size`` (``data.crop``; see the module doc)."""

    mode: str  # "pad_crop" | "random_resized" | "center"
    size: int
    padding: int = 4
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __call__(
        self,
        images: Tensor,
        sizes: Tensor | None,
        generator: torch.Generator,
        total: int | None = None,
        offset: int = 0,
    ) -> Tensor:
        """Training crop: uint8 [b, C, H, W] (+ sizes [b, 2]) -> [b, C, size, size] (uint8 or float 0..255)."""
        if self.mode == "pad_crop":
            return random_crop_flip(images, self.padding, self.flip, generator, total, offset)
        sizes = image_sizes(images, sizes)
        if self.mode == "random_resized":
            boxes = random_resized_boxes(sizes, self.scale, self.ratio, generator, total, offset)
        else:
            boxes = center_boxes(sizes)
        x = resample_boxes(images, boxes, self.size)
        return flip_some(x, generator, total, offset) if self.flip else x

    def center(self, images: Tensor, sizes: Tensor | None) -> Tensor:
        """Evaluation crop: the images as they are when they have the training size, else the
        central square resampled to it."""
        if sizes is None and images.shape[-2:] == (self.size, self.size):
            return images
        return resample_boxes(images, center_boxes(image_sizes(images, sizes)), self.size)


def image_sizes(images: Tensor, sizes: Tensor | None) -> Tensor:
    """Each image's (h, w) [b, 2] int64 on the images' device: ``sizes``, or the tensor's own size."""
    if sizes is not None:
        return sizes.to(images.device)
    b, _, h, w = images.shape
    # Filled on the device (h and w travel as kernel arguments): ``torch.tensor([h, w], device=...)``
    # would be a host-to-device copy, and a wait for the device, every step.
    out = torch.empty((b, 2), dtype=torch.long, device=images.device)
    out[:, 0].fill_(h)
    out[:, 1].fill_(w)
    return out


@lru_cache(maxsize=32)
def _stats_on(mean: tuple[float, ...], std: tuple[float, ...], device: str) -> tuple[Tensor, Tensor]:
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(device)
    return m, s


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (or float in 0..255) [B, C, H, W] -> float32 (x/255 - mean) / std.

    ``mean``/``std`` are built once per device (a fresh ``torch.tensor(..., device=cuda)`` per
    batch is a host-to-device copy that waits for the device)."""
    m, s = _stats_on(tuple(mean), tuple(std), str(images.device))
    x = images.float()
    x = x.div_(255) if x is not images else x.div(255)  # never modify the caller's float tensor
    return x.sub_(m).div_(s)


def standardize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """float pixels in [0, 1] [B, C, H, W] -> (x - mean) / std (a new tensor; the engine's views)."""
    m, s = _stats_on(tuple(mean), tuple(std), str(images.device))
    return (images.float() - m).div_(s)
