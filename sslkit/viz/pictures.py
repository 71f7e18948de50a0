"""The three pictures of ``sslkit viz``.

Attention maps follow Gidaris et al. (ICLR 2018, Figure 3), after Zagoruyko & Komodakis'
activation-based attention: for a stage's feature map A [C, H, W], the map is
sum_c |A_c|^p, normalised to [0, 1] and overlaid on the image; a larger p weights the most
active locations more (the paper uses p = 1, 2, 4 for successively deeper layers).
First-layer filters (Figure 4) are each scaled to [0, 1] on their own and shown as RGB tiles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..data.augment import normalize
from ..errors import CheckpointError, DataError
from ..images import read_image
from ..interfaces import Backbone
from .render import colormap, grid, upscale

DEFAULT_POWERS = (1.0, 2.0, 4.0)  # block1, block2, deeper blocks (paper Figure 3)


def load_images(paths: Sequence[str | Path], size: int) -> Tensor:
    """Image files -> uint8 [N, 3, size, size] (centre-cropped and resized: :func:`sslkit.images.read_image`)."""
    out = [read_image(p, (size, size)) for p in paths]  # a one-line DataError names an unreadable file
    if not out:
        raise DataError("no images given: pass one or more image files")
    return torch.from_numpy(np.stack(out))


@torch.no_grad()
def attention_maps(
    backbone: Backbone, images: Tensor, mean, std, stages: Sequence[str], powers: Sequence[float]
) -> dict[str, Tensor]:
    """{stage: [N, H, W] in [0, 1]} at the image resolution: sum_c |A|^p, min-max per image."""
    backbone.eval()
    feats = backbone(normalize(images, mean, std), list(stages))
    out = {}
    for i, name in enumerate(stages):
        p = powers[min(i, len(powers) - 1)]
        amap = feats[name].abs().pow(p).sum(1, keepdim=True)  # [N, 1, h, w]
        amap = F.interpolate(amap, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        lo = amap.flatten(1).min(1).values[:, None, None]
        hi = amap.flatten(1).max(1).values[:, None, None]
        out[name] = (amap - lo) / (hi - lo).clamp(min=1e-12)
    return out


def attention_figure(
    images: Tensor, maps: dict[str, Tensor], powers: Sequence[float], tile: int = 128, alpha: float = 0.6
) -> Image.Image:
    """One row per image: the image, then each stage's map blended over it."""
    rows = []
    for n in range(images.shape[0]):
        img = images[n].permute(1, 2, 0).numpy()
        row = [upscale(img, tile)]
        for name in maps:
            heat = colormap(maps[name][n].numpy()).astype(np.float32)
            blend = ((1 - alpha) * img.astype(np.float32) + alpha * heat).astype(np.uint8)
            row.append(upscale(blend, tile))
        rows.append(row)
    titles = ["image"] + [f"{name} p={powers[min(i, len(powers) - 1)]:g}" for i, name in enumerate(maps)]
    return grid(rows, titles)


def first_conv(backbone: nn.Module) -> nn.Conv2d:
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise CheckpointError("the backbone has no Conv2d layer, so it has no first-layer filters to show")


def filters_figure(weight: Tensor, tile: int = 40, per_row: int | None = None) -> Image.Image:
    """Conv weights [O, I, k, k] -> a grid of tiles; RGB when I == 3, else the mean over inputs."""
    w = weight.detach().float().cpu()
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    lo = w.flatten(1).min(1).values[:, None, None, None]
    hi = w.flatten(1).max(1).values[:, None, None, None]
    pixels = ((w - lo) / (hi - lo).clamp(min=1e-12) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    per_row = per_row or int(np.ceil(np.sqrt(pixels.shape[0])))
    tiles = [upscale(t, tile, nearest=True) for t in pixels]
    blank = np.full_like(tiles[0], 255)
    rows = [tiles[i : i + per_row] for i in range(0, len(tiles), per_row)]
    rows[-1] = rows[-1] + [blank] * (per_row - len(rows[-1]))
    return grid(rows, pad=2)


def read_metrics(run: str | Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl" if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise CheckpointError(f"no metrics at '{path}': give a run folder of 'sslkit train'")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError:
        raise CheckpointError(f"'{path}' is not valid JSON lines; is it a metrics.jsonl of sslkit train?") from None


# (panel title, {legend: metrics.jsonl key}) of the training curves; a panel is drawn when the
# run recorded at least one of its keys in every epoch.
CURVE_PANELS = (
    ("pretext loss", {"train": "train_loss", "held-out": "heldout_loss"}),
    ("accuracy", {"pretext, train": "train_acc", "pretext, held-out": "heldout_acc", "online kNN": "knn_acc"}),
    ("embedding std (collapse: -> 0)", {"train": "train_std", "held-out": "heldout_std"}),
)


def _keys(keys: dict[str, str], rows: list[dict]) -> dict[str, str]:
    """A panel's {legend: key} that every epoch recorded, with each task of a mix as its own lines
    (``rotation/train_loss`` -> "rotation, train")."""
    parts = dict.fromkeys(k.rpartition("/")[0] for k in rows[0] if "/" in k)
    found = {label: key for label, key in keys.items() if all(key in r for r in rows)}
    for part in parts:
        for label, key in keys.items():
            if all(f"{part}/{key}" in r for r in rows):
                found[f"{part}, {label}"] = f"{part}/{key}"
    return found


def curves_figure(rows: list[dict]) -> Image.Image:
    """The training curves per epoch with matplotlib: loss, accuracies (pretext and the online kNN
    monitor) and, for tasks that report it, the embedding std; integer epoch ticks."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not rows:
        raise CheckpointError("metrics.jsonl is empty: the run has not finished an epoch yet")
    epochs = [r["epoch"] for r in rows]
    panels = [
        (title, {label: [r.get(key) for r in rows] for label, key in _keys(keys, rows).items()})
        for title, keys in CURVE_PANELS
    ]
    panels = [(title, series) for title, series in panels if series]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels, strict=True):
        for label, values in series.items():
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="best", frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return im.convert("RGB")
