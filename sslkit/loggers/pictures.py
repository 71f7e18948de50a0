"""The pictures loggers record: what the task feeds the network (``sslkit show-batch``) and the
training curves (``sslkit viz curves``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from ..config import RunConfig
    from ..plugins import Plugins


def batch_picture(config: RunConfig, plugins: Plugins, images: int = 4, seed: int = 0) -> Image.Image:
    """A labelled grid of a few training images after crop + flip, normalisation and the task's
    transform: the same steps as the training loop and ``sslkit show-batch``."""
    import torch

    from ..data.augment import normalize, random_crop_flip
    from ..data.opener import load_dataset
    from ..engine.trainer import build_model
    from ..preview import render_preview

    dataset = load_dataset(config.data.name, plugins, "train", config.data.image_size)
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(dataset), generator=generator)[: min(images, len(dataset))]
    x = random_crop_flip(dataset.images[pick], config.data.crop_padding, config.data.flip, generator)
    mean, std = (config.data.mean, config.data.std) if config.data.mean and config.data.std else dataset.stats()
    model = build_model(config, plugins)
    with torch.no_grad():
        items = model.task.preview(*model.task.prepare(normalize(x, mean, std), generator))
    columns = len(items) // len(pick) if len(items) % len(pick) == 0 else min(8, len(items))
    return render_preview(items, columns)


def curves_picture(history: list[dict[str, Any]]) -> Image.Image:
    from ..viz.pictures import curves_figure

    return curves_figure(history)
