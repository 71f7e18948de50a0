"""Cutting, shuffling and normalising 3x3 tiles for a whole batch at once, on its device.

Noroozi and Favaro, ECCV 2016 (Sec. 3.2): the image is split into a 3x3 grid of cells and a
smaller tile is taken at a random position inside each cell (64-px tiles from 85-px cells of a
255-px crop), so neighbouring tiles do not share edges the network could match instead of
learning what objects look like. Each tile is normalised to zero mean and unit variance on its
own, and some tiles are made grayscale, against low-level shortcuts (edge continuity, colour
and chromatic aberration).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GRID = 3
# ITU-R BT.601 luma weights: the usual RGB -> gray.
_LUMA = (0.299, 0.587, 0.114)


def tile_geometry(side: int, min_size: int, tile_ratio: float) -> tuple[int, int, int]:
    """(image side to tile, cell side, tile side) for square images of ``side`` pixels.

    Images smaller than ``min_size`` are upsampled to it first, so 32x32 CIFAR images become
    64 px: 21-px cells and 16-px tiles (``tile_ratio`` 0.75, the paper's 64/85), big enough
    for a NIN's two pooling stages. ``min_size=0`` never resizes.
    """
    size = max(side, min_size)
    cell = size // GRID
    if cell < 1:
        raise ValueError(f"a {side}px image is too small for a {GRID}x{GRID} grid; raise task.min_size")
    tile = max(1, min(cell, round(cell * tile_ratio)))
    return size, cell, tile


def cut_tiles(images: Tensor, cell: int, tile: int, generator: torch.Generator) -> Tensor:
    """images [B, C, S, S] -> tiles [B, 9, C, tile, tile], row-major over the grid.

    Each tile sits at a random offset in [0, cell - tile] inside its cell, drawn per image and
    per tile from ``generator``; pixels beyond the 3*cell grid shift the whole grid randomly.
    One gather for the batch: no Python loop over images or tiles.
    """
    b, _, h, w = images.shape
    device = images.device
    n = GRID * GRID
    grid_rows = torch.arange(GRID, device=device).repeat_interleave(GRID) * cell  # [9]
    grid_cols = torch.arange(GRID, device=device).repeat(GRID) * cell  # [9]

    def origins(extent: int, grid: Tensor) -> Tensor:
        shift = torch.randint(0, extent - GRID * cell + 1, (b, 1), generator=generator, device=device)
        jitter = torch.randint(0, cell - tile + 1, (b, n), generator=generator, device=device)
        return shift + grid + jitter  # [B, 9]

    steps = torch.arange(tile, device=device)
    rows = origins(h, grid_rows)[:, :, None] + steps  # [B, 9, T]
    cols = origins(w, grid_cols)[:, :, None] + steps  # [B, 9, T]
    batch = torch.arange(b, device=device)[:, None, None, None]
    # Advanced indices around the channel slice put the indexed dims first: [B, 9, T, T, C].
    return images[batch, :, rows[:, :, :, None], cols[:, :, None, :]].permute(0, 1, 4, 2, 3)


def grayscale_tiles(tiles: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Replace each RGB tile [.., 3, T, T] by its luma in all channels with ``probability``."""
    if probability <= 0 or tiles.shape[-3] != 3:
        return tiles
    weights = torch.tensor(_LUMA, device=tiles.device, dtype=tiles.dtype).view(3, 1, 1)
    gray = (tiles * weights).sum(dim=-3, keepdim=True).expand_as(tiles)
    chosen = torch.rand(tiles.shape[:-3], generator=generator, device=tiles.device) < probability
    return torch.where(chosen[..., None, None, None], gray, tiles)


def normalize_tiles(tiles: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit standard deviation per tile and channel (a flat tile becomes zeros)."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / std.clamp_min(eps)


def resize_to(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of a batch to ``size`` x ``size`` (a no-op when it already is)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
