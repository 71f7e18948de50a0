"""A batch of uint8 images as the training loop receives it, and how mixed sizes share one tensor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """uint8 images [b, C, H, W] on the device, padded to the batch's largest image, and each
    image's own (h, w) inside the padding ([b, 2]; None when every image fills the tensor)."""

    images: Tensor
    sizes: Tensor | None = None

    def pin_memory(self) -> Batch:  # DataLoader(pin_memory=True) calls this on custom types
        return Batch(self.images.pin_memory(), None if self.sizes is None else self.sizes.pin_memory())


def pad_batch(images: Sequence[Tensor]) -> Batch:
    """uint8 [3, h_i, w_i] images -> one zero-padded [b, 3, H, W] tensor and their sizes [b, 2]."""
    sizes = torch.tensor([[im.shape[1], im.shape[2]] for im in images], dtype=torch.long)
    h, w = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    if bool((sizes[:, 0] == h).all() and (sizes[:, 1] == w).all()):
        return Batch(torch.stack(list(images)), sizes)
    out = torch.zeros(len(images), images[0].shape[0], h, w, dtype=torch.uint8)
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return Batch(out, sizes)
