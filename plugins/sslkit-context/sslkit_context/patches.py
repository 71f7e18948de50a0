"""Patch sampling for context prediction: a 3x3 grid of cells, one jittered patch per cell.

Doersch, Gupta, Efros, "Unsupervised Visual Representation Learning by Context Prediction",
ICCV 2015 (sec. 3); the 3x3-grid form with the 8 outer patches each paired with the centre is
mmselfsup's RelativeLoc (its relative_loc configs).

Geometry along each axis (``p`` patch, ``j`` jitter, ``g`` gap)::

    |<- cell = p + 2j ->|<- g ->|<- cell ->|<- g ->|<- cell ->|
      patch at offset 0..2j inside its cell, drawn independently per patch and axis

so a patch never leaves its cell and two neighbours are always at least ``g`` pixels apart
(they never overlap, even at g = 0). The distance between neighbours when the jitter is zero
(Doersch's "gap": 48 px for 96 px patches, jitter 7) is ``g + 2j``. The grid (``extent`` px) is
placed at a random position inside the image, or centred.

Everything is drawn in batch on the images' device from the caller's generator; the patches are
gathered with one advanced-indexing call (no per-image Python loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sslkit.errors import ConfigError

# Label k <-> (dx, dy) of the outer patch relative to the centre, y pointing down
# (Doersch et al., ICCV 2015, sec. 3, fig. 2).
OFFSETS: tuple[tuple[int, int], ...] = ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))
# Row-major cell index (row = dy + 1, column = dx + 1) of each label's outer patch; cell 4 is the centre.
OUTER_CELLS: tuple[int, ...] = tuple((dy + 1) * 3 + (dx + 1) for dx, dy in OFFSETS)
CENTRE_CELL = 4


@dataclass(frozen=True)
class Geometry:
    """Patch size, jitter (max shift either way from the cell centre) and gap between cells, in px."""

    patch: int
    jitter: int
    gap: int

    @property
    def cell(self) -> int:
        return self.patch + 2 * self.jitter

    @property
    def stride(self) -> int:
        """Distance between the origins of neighbouring cells."""
        return self.cell + self.gap

    @property
    def extent(self) -> int:
        """Side of the whole 3x3 grid."""
        return 3 * self.cell + 2 * self.gap


def auto_geometry(size: int) -> Geometry:
    """Defaults for square images of ``size`` px: patch ~ size/4, jitter ~ 7% of the patch
    (Doersch's 7/96, at least 1 px), the rest of the image as gaps.

    32 -> patch 8, jitter 1, gap 1 (10-px cells); 96 -> 24, 2, 6;
    255 -> 64, 4, 19 (mmselfsup's 64-px patches). Neighbours are then g + 2j ~ 0.4 patch apart
    when unjittered, close to the paper's half a patch.
    """
    patch = max(3, round(size / 4))
    jitter = max(1, round(0.07 * patch))
    gap = max(0, (size - 3 * patch - 6 * jitter) // 2)
    geom = Geometry(patch, jitter, gap)
    if geom.extent > size:
        raise ConfigError(
            f"images of {size} px are too small for context prediction; use task.upsample=96 or larger images"
        )
    return geom


def resolve_geometry(size: int, patch: int | None, jitter: int | None, gap: int | None) -> Geometry:
    """The configured geometry, with unset values taken from :func:`auto_geometry` of ``size``."""
    auto = auto_geometry(size) if None in (patch, jitter, gap) else None
    geom = Geometry(
        patch if patch is not None else auto.patch,  # type: ignore[union-attr]
        jitter if jitter is not None else auto.jitter,  # type: ignore[union-attr]
        gap if gap is not None else auto.gap,  # type: ignore[union-attr]
    )
    if geom.extent > size:
        raise ConfigError(
            f"context grid of {geom.extent} px (3 x (patch {geom.patch} + 2 x jitter {geom.jitter}) + 2 x gap "
            f"{geom.gap}) does not fit {size} px images; lower task.patch_size/jitter/gap or set task.upsample"
        )
    return geom


@dataclass
class PatchSample:
    """``centre`` [B, C, p, p]; ``outer`` [8B, C, p, p] label-major (index k*B + i is image i's
    patch for label k); ``targets`` [8B]; ``corners`` [B, 9, 2] the (y, x) top-left corner of
    every cell's patch in image coordinates, cells row-major (4 is the centre)."""

    centre: Tensor
    outer: Tensor
    targets: Tensor
    corners: Tensor


def sample_patches(
    images: Tensor,
    geom: Geometry,
    generator: torch.Generator,
    random_origin: bool = True,
    outer_cells: Tensor | None = None,
) -> PatchSample:
    """images [B, C, H, W] -> one patch per cell of a 3x3 grid per image (see the module docstring).

    ``outer_cells``: ``OUTER_CELLS`` as a tensor already on the images' device (no host-to-device
    copy, which waits for the GPU, per call)."""
    b, _, h, w = images.shape
    if geom.extent > min(h, w):
        raise ConfigError(
            f"context grid of {geom.extent} px does not fit {h}x{w} images; lower task.patch_size/jitter/gap "
            "or set task.upsample"
        )
    device = images.device
    if random_origin:
        oy = torch.randint(0, h - geom.extent + 1, (b, 1), generator=generator, device=device)
        ox = torch.randint(0, w - geom.extent + 1, (b, 1), generator=generator, device=device)
    else:
        oy = torch.full((b, 1), (h - geom.extent) // 2, device=device)
        ox = torch.full((b, 1), (w - geom.extent) // 2, device=device)
    cells = torch.arange(9, device=device)
    jy = torch.randint(0, 2 * geom.jitter + 1, (b, 9), generator=generator, device=device)
    jx = torch.randint(0, 2 * geom.jitter + 1, (b, 9), generator=generator, device=device)
    y = oy + (cells // 3) * geom.stride + jy  # [B, 9] top-left corners
    x = ox + (cells % 3) * geom.stride + jx
    span = torch.arange(geom.patch, device=device)
    rows = (y[:, :, None] + span)[:, :, :, None]  # [B, 9, p, 1]
    cols = (x[:, :, None] + span)[:, :, None, :]  # [B, 9, 1, p]
    batch = torch.arange(b, device=device)[:, None, None, None]
    # Advanced indices around the channel slice go first: [B, 9, p, p, C] -> [B, 9, C, p, p].
    patches = images[batch, :, rows, cols].permute(0, 1, 4, 2, 3)
    outer_cells = (torch.tensor(OUTER_CELLS) if outer_cells is None else outer_cells).to(device)
    outer = patches[:, outer_cells].transpose(0, 1).flatten(0, 1)  # [8, B, ...] -> [8B, ...]
    targets = (
        torch.arange(8 * b, device=device) // b
    )  # label-major; no repeat_interleave (it can size its output on the host)
    return PatchSample(patches[:, CENTRE_CELL].contiguous(), outer.contiguous(), targets, torch.stack([y, x], dim=-1))
