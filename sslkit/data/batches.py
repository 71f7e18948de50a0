"""A batch of uint8 images as the training loop receives it, and how mixed sizes share one tensor."""

from __future__ import annotations

import warnings
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


def pad_images(images: list[Tensor]) -> tuple[Tensor, Tensor]:
    """uint8 [3, h_i, w_i] images (on any one device) -> zero-padded [B, 3, H, W] and sizes [B, 2] (on the host).

    One batched operation where possible: ``torch.stack`` when the sizes agree, else a nested
    tensor's ``to_padded_tensor`` (one call for the batch). The padded batch is the only copy:
    B x 3 x H x W bytes, uint8, nothing in float."""
    sizes = torch.tensor([[im.shape[1], im.shape[2]] for im in images], dtype=torch.long)
    if bool((sizes == sizes[0]).all()):
        return torch.stack(images), sizes
    h, w = int(sizes[:, 0].max()), int(sizes[:, 1].max())
    try:
        with warnings.catch_warnings():  # "nested tensors are a prototype": nothing for a user to act on
            warnings.simplefilter("ignore", UserWarning)
            nested = torch.nested.nested_tensor(images)
        padded = nested.to_padded_tensor(0, (len(images), images[0].shape[0], h, w))
    except (RuntimeError, NotImplementedError):  # a build without nested uint8 support: one copy an image
        padded = images[0].new_zeros(len(images), images[0].shape[0], h, w)
        for i, im in enumerate(images):
            padded[i, :, : im.shape[1], : im.shape[2]] = im
    return padded, sizes


def pad_batch(images: Sequence[Tensor]) -> Batch:
    """uint8 [3, h_i, w_i] images -> one zero-padded [b, 3, H, W] tensor and their sizes [b, 2]."""
    out, sizes = pad_images(list(images))
    return Batch(out, sizes)
