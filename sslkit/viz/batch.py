"""What the network sees: a few training images through the training loop's own steps (the crop
``data.crop`` asks for, normalisation, the task's transform), drawn as a labelled grid.

The one batch picture: ``sslkit show-batch`` writes it, the TensorBoard and W&B loggers record
it. Plain Pillow drawing; inputs are normalised tensors, so each image is stretched to its own
min..max for display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..files import atomic_write

if TYPE_CHECKING:
    from PIL import Image

    from ..config import RunConfig
    from ..data.datasets import ImageData
    from ..plugins import Plugins

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


def batch_items(
    config: RunConfig, plugins: Plugins, images: int = 4, seed: int = 0
) -> tuple[list[PreviewItem], int, ImageData]:
    """(the task's preview items, grid columns, the images drawn): ``images`` seeded training
    images through the training loop's own input pipeline (crop + flip, or the task's views) and
    the task's transform, without decoding the rest of the data."""
    from ..data.batches import Batch
    from ..data.opener import sample_images
    from ..engine.distributed import Placement, resolve_device
    from ..engine.inputs import make_crop, make_pipeline
    from ..engine.model import build_model
    from ..engine.trainer import run_info

    dataset = sample_images(config.data, plugins, images, seed)
    mean, std = dataset.stats()
    data = config.data.model_copy(update={"mean": config.data.mean or mean, "std": config.data.std or std})
    config = config.model_copy(update={"data": data})
    crop = make_crop(config, dataset)
    device = resolve_device(config.device)  # where the task draws its labels, as in training
    model = build_model(config, plugins).to(device)
    pipeline = make_pipeline(config, crop, model.task, dataset.channels)
    model.task.setup(run_info(config, 1, Placement(device), crop.size))
    generator = torch.Generator(device).manual_seed(seed)
    x = pipeline.train(Batch(dataset.images.to(device)), generator)  # what the loop would feed the task
    with torch.no_grad():
        items = model.task.preview(*model.task.prepare(x, generator))
    columns = len(items) // len(dataset) if len(items) % len(dataset) == 0 else min(8, len(items))
    return list(items), columns, dataset


def batch_picture(config: RunConfig, plugins: Plugins, images: int = 4, seed: int = 0) -> Image.Image:
    """The labelled grid of :func:`batch_items` as a PIL image."""
    items, columns, _ = batch_items(config, plugins, images, seed)
    return render_preview(items, columns)


def save_preview(items: Sequence[PreviewItem], path: str | Path, columns: int) -> Path:
    path = Path(path)
    sheet = render_preview(items, columns)
    atomic_write(path, lambda tmp: sheet.save(tmp, format=_format(path)))
    return path


def _format(path: Path) -> str:
    from PIL import Image

    Image.init()
    return Image.EXTENSION.get(path.suffix.lower(), "PNG")
