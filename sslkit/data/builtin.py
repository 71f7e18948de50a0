"""The built-in datasets: ``cifar10`` (downloaded by torchvision) and ``sample`` (generated)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..files import atomic_write
from .datasets import CIFAR10_MEAN, CIFAR10_STD, ImageData

log = logging.getLogger(__name__)

SAMPLE_VERSION = 1
SAMPLE_SIZES = {"train": 600, "test": 100}  # images per class
SAMPLE_SEEDS = {"train": 0, "test": 1}


def _split(split: str) -> str:
    if split not in ("train", "test"):
        raise DataError(f"unknown split '{split}': use 'train' or 'test'")
    return split


def load_cifar10(split: str, root: Path) -> ImageData:
    """CIFAR-10 (Krizhevsky 2009) via torchvision, downloaded into ``root/cifar10`` once."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar10"
    try:
        ds = CIFAR10(str(folder), train=_split(split) == "train", download=True)
    except Exception as exc:  # URLError, socket errors, corrupt archive...
        raise DataError(
            f"could not download CIFAR-10 into {folder} ({type(exc).__name__}: {exc}); offline, "
            f"put the extracted 'cifar-10-batches-py' folder in {folder} (or set SSLKIT_DATA to a "
            "folder whose cifar10/ holds it), or pass --data PATH to a folder of images"
        ) from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    labels = torch.tensor(ds.targets, dtype=torch.int64)
    return ImageData(images, labels, list(ds.classes), f"cifar10 ({split})", CIFAR10_MEAN, CIFAR10_STD)


def load_sample(split: str, root: Path) -> ImageData:
    """The embedded default: 10 classes of generated upright 32x32 scenes (see ``sample.py``).

    Generated deterministically in a few seconds at first use, then cached under ``root``.
    """
    from .sample import SAMPLE_CLASSES, generate_sample

    split = _split(split)
    cache = root / f"sample-v{SAMPLE_VERSION}-{split}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            return ImageData(blob["images"], blob["labels"], list(SAMPLE_CLASSES), f"sample ({split})")
        except Exception:
            log.warning("ignoring unreadable cache %s; generating the sample data again", cache)
    images, labels, classes = generate_sample(SAMPLE_SIZES[split], seed=SAMPLE_SEEDS[split])
    data = ImageData(torch.from_numpy(images), torch.from_numpy(labels), list(classes), f"sample ({split})")
    try:
        blob = {"images": data.images, "labels": data.labels}
        atomic_write(cache, lambda tmp: torch.save(blob, tmp))  # no half file, no temporary left on failure
    except OSError as exc:
        log.warning("could not cache the sample data at %s: %s", cache, exc)
    return data
