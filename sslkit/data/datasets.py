"""Images in memory (:class:`ImageData`, a uint8 tensor [N, C, H, W]) and the seeded splits.

The bottom of :mod:`sslkit.data`: what a registered dataset returns (``register_datasets`` hook:
``cifar10``, ``sample``, or a plugin's), where datasets cache (:func:`data_root`), and the
held-out, test and subset splits that RAM data and packed stores share. Which data a name, a
store or a folder means is decided once, in :mod:`sslkit.data.opener`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import torch
from torch import Tensor

from ..errors import DataError
from ..files import data_root  # noqa: F401  (re-exported: sslkit.data.datasets.data_root)

if TYPE_CHECKING:
    from ..plugins import Plugins

_Data = TypeVar("_Data", bound="_Splittable")


class _Splittable(Protocol):
    """What the splits below need: images in RAM (ImageData) and streamed stores (StoreSource) alike."""

    @property
    def description(self) -> str: ...

    def __len__(self) -> int: ...

    def select(self: _Data, index: Tensor) -> _Data: ...


# CIFAR-10 channel statistics as used by the RotNet code
# (Gidaris et al., ICLR 2018, sec. 3.1; github.com/gidariss/FeatureLearningRotNet).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


@dataclass
class ImageData:
    """Images [N, C, H, W] uint8, labels [N] int64 (or None), and what they are."""

    images: Tensor
    labels: Tensor | None
    classes: list[str]
    description: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"{self.description}: images must be a uint8 tensor [N, C, H, W]")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def uniform_size(self) -> tuple[int, int]:
        return (self.images.shape[2], self.images.shape[3])

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def select(self, index: Tensor) -> ImageData:
        return replace(
            self,
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            files=[self.files[i] for i in index.tolist()] if self.files else [],
        )

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std in [0, 1]: the dataset's own, or measured over every image
        (population std, as a packed store measures it, so RAM and store runs normalise alike)."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        # Exact, from a 256-bin histogram per channel (integer counting: fast and no float error).
        hist = torch.stack([torch.bincount(self.images[:, c].flatten(), minlength=256) for c in range(self.channels)])
        levels = torch.arange(256, dtype=torch.float64)
        pixels = hist[0].sum().double()
        mean = (hist.double() * levels).sum(1) / pixels
        std = ((hist.double() * levels**2).sum(1) / pixels - mean * mean).clamp_min(0).sqrt()
        return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


class DatasetLoader(Protocol):
    """What ``register_datasets`` registers: ``loader(split, root) -> ImageData``.

    ``split`` is ``"train"`` or ``"test"``; ``root`` is the data folder (``$SSLKIT_DATA`` or the
    user cache) where a loader may download or cache.
    """

    def __call__(self, split: str, root: Path) -> ImageData: ...


def load_registered(name: str, plugins: Plugins, split: str = "train") -> object:
    """What the dataset registered as ``name`` returns for ``split``: :class:`ImageData`, or a packed
    store (``imagenet``); :mod:`sslkit.data.opener` checks which and turns a store into RAM."""
    data = plugins.datasets.get(name)(split, data_root())
    if isinstance(data, ImageData) and len(data) == 0:
        raise DataError(f"{data.description}: the dataset is empty")
    return data


def split_holdout(data: _Data, fraction: float, seed: int) -> tuple[_Data, _Data | None]:
    """(train, held-out): a seeded random ``fraction`` of the images, never trained on."""
    n = len(data)
    n_hold = int(round(n * fraction))
    if n_hold == 0:
        return data, None
    if n - n_hold < 1:
        raise DataError(f"{data.description}: {n} images are too few to hold out {fraction:.0%}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return data.select(perm[n_hold:].sort().values), data.select(perm[:n_hold].sort().values)


def carve_test(data: _Data, fraction: float, seed: int) -> tuple[_Data, _Data | None]:
    """(rest, test): the seeded test split carved from data that has none.

    The probes carve their test split with this (``sslkit probe``), and pretraining leaves the
    same images out when ``data.exclude_test`` is set, so a run never pretrains on test images.
    """
    return split_holdout(data, fraction, seed + 1000)


def take_subset(data: _Data, size: int | None, seed: int) -> _Data:
    if size is None or size >= len(data):
        return data
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 1))
    return data.select(perm[:size].sort().values)
