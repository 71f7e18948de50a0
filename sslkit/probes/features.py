"""Where a probe's inputs come from: a frozen trunk's features computed once (cached), or the
trunk run on every batch (augmented and/or fine-tuned).

Caching and augmentation: the paper trains probes with the pretext's crop + flip (Gidaris et al.,
ICLR 2018, sec. 3.1), so every epoch sees different features and nothing can be cached. :class:`CachedFeatures`
is the fast path (one trunk pass per image, no augmentation: a documented deviation);
:class:`LiveFeatures` is the faithful protocol (the frozen trunk runs under ``no_grad`` on each
augmented batch; fine-tuning always takes this path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..data.augment import normalize, random_crop_flip
from ..engine.precision import autocast
from ..errors import ConfigError
from ..interfaces import Backbone


def run_trunk(backbone: Backbone, x: Tensor, layers: Sequence[str], tiles: int = 1) -> dict[str, Tensor]:
    """{layer: stage map} of normalised images x [B, C, H, W]; with ``tiles`` > 1 the trunk reads
    each image as ``tiles x tiles`` patches, each on its own, and every stage map is stitched back
    into one [B, C', tiles*h, tiles*w] map in the patches' places.

    Why: a trunk pretrained on patches (context prediction: 8-px patches of 32-px images) learnt
    its deeper layers on patch-sized inputs, border padding included; on whole images those layers
    see inputs they never saw (Doersch et al., ICCV 2015, likewise compare patches, at the scale
    they trained on). Stitched maps keep the whole-image shape, so every probe works unchanged."""
    if tiles == 1:
        return backbone(x, list(layers))
    b, c, h, w = x.shape
    if h % tiles or w % tiles:
        raise ConfigError(f"--tiles {tiles} does not divide {h}x{w} images; use a divisor of the image side")
    th, tw = h // tiles, w // tiles
    patches = x.reshape(b, c, tiles, th, tiles, tw).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, th, tw)
    if x.is_contiguous(memory_format=torch.channels_last):
        patches = patches.contiguous(memory_format=torch.channels_last)
    maps = {}
    for name, f in backbone(patches, list(layers)).items():  # [B*tiles*tiles, C', h', w']
        if f.dim() != 4:
            raise ConfigError(f"--tiles needs spatial stage maps; '{name}' gives {tuple(f.shape[1:])}")
        _, cf, fh, fw = f.shape
        maps[name] = (
            f.reshape(b, tiles, tiles, cf, fh, fw).permute(0, 3, 1, 4, 2, 5).reshape(b, cf, tiles * fh, tiles * fw)
        )
    return maps


@torch.no_grad()
def extract(
    backbone: Backbone,
    images: Tensor,
    layers: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int = 256,
    tiles: int = 1,
    mirror: bool = False,
    precision: str = "fp32",
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Tensor]:
    """uint8 images [N, C, H, W] -> {layer: float32 features [N, ...]} on ``device``, one pass
    of the frozen trunk (eval mode) for every layer asked for (``tiles``: see :func:`run_trunk`;
    ``mirror``: of the horizontally flipped images; ``precision``: bf16/fp16 autocast, features
    stored in float32); ``on_progress(done, total)`` after every batch."""
    was_training = backbone.training
    backbone.eval()
    parts: dict[str, list[Tensor]] = {name: [] for name in layers}
    for start in range(0, images.shape[0], batch_size):
        x = normalize(images[start : start + batch_size].to(device), mean, std)
        if mirror:
            x = x.flip(-1)
        if device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            maps = run_trunk(backbone, x, layers, tiles)
        for name, f in maps.items():
            parts[name].append(f.float())
        if on_progress is not None:
            on_progress(min(start + batch_size, images.shape[0]), images.shape[0])
    backbone.train(was_training)
    return {name: torch.cat(p) for name, p in parts.items()}


class CachedFeatures:
    """Precomputed features; ``batch(idx, generator)`` just indexes them.

    With ``mirrored`` (the features of the same images flipped horizontally) a training batch
    takes each sample from one of the two at random: the flip half of the paper's crop + flip
    augmentation, at the cost of one more trunk pass over the training split."""

    def __init__(self, features: Tensor, mirrored: Tensor | None = None) -> None:
        if mirrored is not None and mirrored.shape != features.shape:
            raise ValueError(f"mirrored features {tuple(mirrored.shape)} != features {tuple(features.shape)}")
        self.features, self.mirrored = features, mirrored

    def __len__(self) -> int:
        return self.features.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    @property
    def index_device(self) -> torch.device:
        """Where ``batch`` wants its indices (the features' device: no copy per batch)."""
        return self.features.device

    def batch(self, idx: Tensor, generator: torch.Generator | None, train: bool) -> Tensor:
        idx = idx.to(self.features.device)
        if not train or self.mirrored is None:
            return self.features[idx]
        if generator is None:  # seeded randomness only: the training loop passes its generator
            raise ValueError("flipped training batches need a torch.Generator")
        flip = torch.rand(idx.shape[0], generator=generator, device=generator.device) < 0.5
        flip = flip.to(self.features.device).view(-1, *([1] * (self.features.dim() - 1)))
        return torch.where(flip, self.mirrored[idx], self.features[idx])


class LiveFeatures:
    """The trunk applied per batch: crop + flip (when training and ``augment``), normalise, run
    to ``layer``. Gradients flow into the trunk only when ``finetune``."""

    def __init__(
        self,
        backbone: Backbone,
        images: Tensor,
        layer: str,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        *,
        augment: bool,
        crop_padding: int = 4,
        flip: bool = True,
        finetune: bool = False,
        tiles: int = 1,
    ) -> None:
        self.backbone, self.images, self.layer, self.tiles = backbone, images, layer, tiles
        self.mean, self.std, self.device = mean, std, device
        self.augment, self.crop_padding, self.flip, self.finetune = augment, crop_padding, flip, finetune
        with torch.no_grad():
            was = backbone.training
            backbone.eval()
            probe = normalize(images[:2].to(device), mean, std)
            self._shape = tuple(run_trunk(backbone, probe, [layer], tiles)[layer].shape[1:])
            backbone.train(was)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def index_device(self) -> torch.device:
        """Where ``batch`` wants its indices: the images' device (host memory: indexing there and
        copying the batch beats copying indices back from the GPU, which would wait for it)."""
        return self.images.device

    def batch(self, idx: Tensor, generator: torch.Generator | None, train: bool) -> Tensor:
        x = self.images[idx.to(self.images.device)]
        if self.device.type == "cuda" and not x.is_cuda:  # pinned: the copy overlaps the GPU's work
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True)
        if train and self.augment:
            if generator is None:  # seeded randomness only: the training loop passes its generator
                raise ValueError("augmented training batches need a torch.Generator")
            x = random_crop_flip(x, self.crop_padding, self.flip, generator)
        x = normalize(x, self.mean, self.std)
        # The trunk is in train mode only while fine-tuning (BN statistics then adapt too).
        self.backbone.train(train and self.finetune)
        with torch.set_grad_enabled(train and self.finetune):
            return run_trunk(self.backbone, x, [self.layer], self.tiles)[self.layer]
