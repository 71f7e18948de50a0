"""Datasets: decoded once into a uint8 tensor [N, C, H, W] held in memory.

A dataset is either a registered name (``register_datasets`` hook: ``cifar10``, ``sample``, or a
plugin's) or a folder of images. Folders are decoded once and cached on disk; their class
sub-folders become labels when every image sits in one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..files import IMAGE_SUFFIXES, atomic_write, walk_images
from ..registry import suggest

if TYPE_CHECKING:
    from ..plugins import Plugins

_Data = TypeVar("_Data", bound="_Splittable")


class _Splittable(Protocol):
    """What the splits below need: images in RAM (ImageData) and packed stores (StoreSource) alike."""

    @property
    def description(self) -> str: ...

    def __len__(self) -> int: ...

    def select(self: _Data, index: Tensor) -> _Data: ...


log = logging.getLogger(__name__)

# CIFAR-10 channel statistics as used by the RotNet code
# (Gidaris et al., ICLR 2018, sec. 3.1; github.com/gidariss/FeatureLearningRotNet).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
CACHE_VERSION = 1


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


def data_root() -> Path:
    """``$SSLKIT_DATA``, else ``$XDG_CACHE_HOME/sslkit`` (default ``~/.cache/sslkit``)."""
    env = os.environ.get("SSLKIT_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sslkit"


def load_dataset(spec: str, plugins: Plugins, split: str = "train", image_size: int | None = None) -> ImageData:
    """A registered dataset by name, or a folder of images by path."""
    if spec in plugins.datasets:
        data = plugins.datasets.get(spec)(split, data_root())
        if not isinstance(data, ImageData):
            data = _store_in_memory(data, image_size, f"dataset '{spec}'")
    elif (Path(spec).expanduser() / "manifest.json").is_file():
        from .store import Store

        data = _store_in_memory(Store.open(Path(spec).expanduser()), image_size, f"--data '{spec}'")
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            known = plugins.datasets.names()
            raise DataError(
                f"--data '{spec}': no such dataset or folder{suggest(spec, known)}; "
                f"give a folder of images or one of: {', '.join(known)}"
            )
        if not path.is_dir():
            raise DataError(f"--data '{spec}': not a folder; give a folder of images (class sub-folders become labels)")
        data = load_folder(path, image_size)
    if len(data) == 0:
        raise DataError(f"{data.description}: the dataset is empty")
    return data


def _decode(path: Path, size: int | None) -> np.ndarray | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except Exception:  # any decoder failure means "unreadable": skipped and reported
        return None


def _store_in_memory(store: object, image_size: int | None, what: str) -> ImageData:
    """A packed store decoded into RAM (at ``image_size`` when its images differ in size)."""
    from .source import store_to_memory
    from .store import Store

    if not isinstance(store, Store):
        raise DataError(f"{what} returned {type(store).__name__}, not sslkit ImageData or Store")
    return store_to_memory(store, image_size)


def load_folder(root: Path, image_size: int | None = None, cache_dir: Path | None = None) -> ImageData:
    """Decode every image under ``root`` once (cached under ``data_root()/folders``).

    Images must share one size unless ``image_size`` is given (then each is resized and
    centre-cropped to it). Unreadable files are skipped with one warning naming them.
    """
    root = root.resolve()
    files = walk_images(root)
    if not files:
        raise DataError(
            f"--data '{root}': no images found (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "point --data at a folder of image files"
        )
    rel = [f.relative_to(root).as_posix() for f in files]
    parents = {Path(r).parent.as_posix() for r in rel}
    labelled = "." not in parents and all("/" not in p for p in parents)
    classes = sorted(parents) if labelled else []

    key = hashlib.sha1(f"v{CACHE_VERSION}|{root}|{image_size}".encode())
    for f, r in zip(files, rel, strict=True):
        st = f.stat()
        key.update(f"|{r}|{st.st_size}|{st.st_mtime_ns}".encode())
    cache = (cache_dir or data_root() / "folders") / f"{root.name}-{key.hexdigest()[:16]}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            return ImageData(
                blob["images"],
                blob["labels"],
                list(blob["classes"]),
                f"folder '{root}'",
                files=list(blob["files"]),
            )
        except Exception:  # a corrupt cache is rebuilt, never fatal
            log.warning("ignoring unreadable cache %s; decoding the folder again", cache)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        arrays = list(pool.map(lambda f: _decode(f, image_size), files, chunksize=64))
    bad = [r for r, a in zip(rel, arrays, strict=True) if a is None]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        log.warning("skipped %d unreadable image(s) in %s: %s", len(bad), root, shown)
    kept = [(r, a) for r, a in zip(rel, arrays, strict=True) if a is not None]
    if not kept:
        raise DataError(f"--data '{root}': none of the {len(files)} image files could be read")
    shapes = Counter(a.shape for _, a in kept)
    if len(shapes) > 1:
        common = shapes.most_common(1)[0][0]
        raise DataError(
            f"--data '{root}': images have {len(shapes)} different sizes (most common "
            f"{common[2]}x{common[1]}); resize them with --set data.image_size={common[1]}"
        )
    images = torch.from_numpy(np.stack([a for _, a in kept]))
    labels = None
    if labelled:
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[Path(r).parent.as_posix()] for r, _ in kept], dtype=torch.int64)
    data = ImageData(images, labels, classes, f"folder '{root}'", files=[r for r, _ in kept])
    try:
        blob = {"images": images, "labels": labels, "classes": classes, "files": data.files}
        atomic_write(cache, lambda tmp: torch.save(blob, tmp))  # unique temporary name per writer
    except OSError as exc:  # a read-only cache only costs decoding time
        log.warning("could not cache decoded images at %s: %s", cache, exc)
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
