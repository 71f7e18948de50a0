"""Where a probe's inputs come from: a frozen trunk's features computed once (cached), or the
trunk run on every batch (augmented and/or fine-tuned).

Caching and augmentation: the paper trains probes with the pretext's crop + flip (Gidaris et al.,
ICLR 2018, sec. 3.1), so every epoch sees different features and nothing can be cached. :class:`CachedFeatures`
is the fast path (one trunk pass per image, no augmentation: a documented deviation);
:class:`LiveFeatures` is the faithful protocol (the frozen trunk runs under ``no_grad`` on each
augmented batch; fine-tuning always takes this path).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..data.augment import normalize, random_crop_flip
from ..interfaces import Backbone


@torch.no_grad()
def extract(
    backbone: Backbone,
    images: Tensor,
    layers: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """uint8 images [N, C, H, W] -> {layer: float32 features [N, ...]} on ``device``, one pass
    of the frozen trunk (eval mode) for every layer asked for."""
    was_training = backbone.training
    backbone.eval()
    parts: dict[str, list[Tensor]] = {name: [] for name in layers}
    for start in range(0, images.shape[0], batch_size):
        x = normalize(images[start : start + batch_size].to(device), mean, std)
        if device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        for name, f in backbone(x, list(layers)).items():
            parts[name].append(f)
    backbone.train(was_training)
    return {name: torch.cat(p) for name, p in parts.items()}


class CachedFeatures:
    """Precomputed features; ``batch(idx, generator)`` just indexes them."""

    def __init__(self, features: Tensor) -> None:
        self.features = features

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
        return self.features[idx.to(self.features.device)]


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
    ) -> None:
        self.backbone, self.images, self.layer = backbone, images, layer
        self.mean, self.std, self.device = mean, std, device
        self.augment, self.crop_padding, self.flip, self.finetune = augment, crop_padding, flip, finetune
        with torch.no_grad():
            was = backbone.training
            backbone.eval()
            probe = normalize(images[:2].to(device), mean, std)
            self._shape = tuple(backbone(probe, [layer])[layer].shape[1:])
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
            return self.backbone(x, [self.layer])[self.layer]
