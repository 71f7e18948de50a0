"""Render what a pretext task feeds the network (:meth:`sslkit.PretextTask.preview`) as a PNG.

Used by ``sslkit show-batch``; plain Pillow drawing, no plotting library. Inputs are normalised
tensors, so each image is stretched to its own min..max for display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

PreviewItem = tuple[Sequence[Tensor], str]


def to_uint8(image: Tensor) -> Tensor:
    """[C, H, W] float (any range) -> [H, W, 3] uint8, stretched to its own min..max."""
    x = image.detach().float().cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    elif x.shape[0] != 3:
        x = x[:1].expand(3, -1, -1)  # show the first channel of other layouts
    lo, hi = x.min(), x.max()
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0)


def render_preview(items: Sequence[PreviewItem], columns: int, min_tile: int = 64):
    """A PIL image: items in a grid of ``columns``, each item's images side by side over its caption."""
    from PIL import Image, ImageDraw

    if not items:
        raise ValueError("nothing to preview")
    height = max(img.shape[-2] for imgs, _ in items for img in imgs)
    scale = max(1, math.ceil(min_tile / height))  # nearest-neighbour zoom keeps pixels visible
    pad, text_h = 4, 14
    tiles = []
    for images, caption in items:
        parts = [
            Image.fromarray(to_uint8(img).numpy()).resize(
                (img.shape[-1] * scale, img.shape[-2] * scale), Image.Resampling.NEAREST
            )
            for img in images
        ]
        w = sum(p.width for p in parts) + 2 * (len(parts) - 1)
        tile = Image.new("RGB", (max(w, 6 * len(caption) + 2), height * scale + text_h), "white")
        x = 0
        for p in parts:
            tile.paste(p, (x, 0))
            x += p.width + 2
        ImageDraw.Draw(tile).text((1, height * scale + 1), caption, fill="black")
        tiles.append(tile)
    cell_w, cell_h = max(t.width for t in tiles) + pad, max(t.height for t in tiles) + pad
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (pad + (i % columns) * cell_w, pad + (i // columns) * cell_h))
    return sheet


def save_preview(items: Sequence[PreviewItem], path: str | Path, columns: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_preview(items, columns).save(path)
    return path
