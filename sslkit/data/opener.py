"""The one data opener: what a data spec (``--data``, ``data.name``) means is decided here, once.

A spec is, in this order:

1. a registered dataset name (``register_datasets``: ``cifar10``, ``sample``, ``imagenet`` or a
   plugin's), whose loader returns :class:`ImageData` or a packed store;
2. a packed store folder (one holding ``manifest.json``, see :mod:`sslkit.data.store`);
3. a folder of images (class sub-folders become labels, :mod:`sslkit.data.folders`).

Anything else is a one-line :class:`DataError` naming the registered datasets. Two entry points
share that one dispatch: :func:`load_dataset` holds everything in RAM (the probes,
``show-batch``), :func:`open_training_data` holds the data in RAM or streams a packed store
(``data.in_memory``; the training loop, :mod:`sslkit.data.training`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from ..errors import ConfigError, DataError
from ..files import scan_images
from ..registry import suggest
from .datasets import ImageData, load_registered
from .folders import folder_fits, load_folder
from .training import StoreSource, TrainingSource

if TYPE_CHECKING:
    from ..config import DataConfig
    from ..plugins import Plugins
    from .store import Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
STORE_MANIFEST = "manifest.json"  # what marks a folder as a packed store (sslkit.data.store.format.MANIFEST)
PACK_STATE = ".pack-state.json"  # an unfinished pack (sslkit.data.store.format.STATE): Store.open says how to finish it


@dataclass(frozen=True)
class DataSpec:
    """What a data spec names: a registered dataset, a packed store or a folder of images."""

    kind: Literal["registered", "store", "folder"]
    spec: str  # as given
    path: Path | None = None  # store and folder: the folder


def resolve_spec(spec: str, plugins: Plugins) -> DataSpec:
    """Which of the three a spec names (see the module doc), or a one-line error."""
    if spec in plugins.datasets:
        return DataSpec("registered", spec)
    path = Path(spec).expanduser()
    if (path / STORE_MANIFEST).is_file() or (path / PACK_STATE).is_file():
        return DataSpec("store", spec, path)
    if not path.exists():
        known = plugins.datasets.names()
        raise DataError(
            f"--data '{spec}': no such dataset or folder{suggest(spec, known)}; "
            f"give a folder of images or one of: {', '.join(known)}"
        )
    if not path.is_dir():
        raise DataError(f"--data '{spec}': not a folder; give a folder of images (class sub-folders become labels)")
    return DataSpec("folder", spec, path)


def _open_named(what: DataSpec, plugins: Plugins, split: str) -> ImageData | Store:
    """A registered dataset's images, or the store it returns; a packed store folder opened."""
    from .store import Store

    if what.kind == "store":
        assert what.path is not None
        return Store.open(what.path)
    data = load_registered(what.spec, plugins, split)
    if not isinstance(data, ImageData | Store):
        raise DataError(f"dataset '{what.spec}' returned {type(data).__name__}, not sslkit ImageData or Store")
    return data


def _nonempty(data: TrainingSource) -> TrainingSource:
    if len(data) == 0:
        raise DataError(f"{data.description}: the dataset is empty")
    return data


def load_dataset(spec: str, plugins: Plugins, split: str = "train", image_size: int | None = None) -> ImageData:
    """The data a spec names, decoded into RAM: a store's images at ``image_size`` when they differ
    in size (the central square resampled), a folder's resized and centre-cropped to it."""
    what = resolve_spec(spec, plugins)
    if what.kind == "folder":
        assert what.path is not None
        data = load_folder(what.path, image_size)
    else:
        opened = _open_named(what, plugins, split)
        data = opened if isinstance(opened, ImageData) else opened.to_memory(image_size)
    _nonempty(data)
    return data


def check_decode(data: DataConfig, device: torch.device) -> None:
    """``data.decode=gpu`` needs a CUDA device to decode on: never silently decode on the CPU."""
    if data.decode == "gpu" and device.type != "cuda":
        found = "no CUDA device is present" if not torch.cuda.is_available() else f"the run trains on {device}"
        raise ConfigError(f"data.decode=gpu decodes on a CUDA GPU, but {found}; use data.decode=cpu")


def open_training_data(
    data: DataConfig, plugins: Plugins, on_progress: Progress | None = None, device: torch.device | None = None
) -> TrainingSource:
    """The training data a config names, in RAM or streamed from a packed store: RAM when
    ``data.in_memory`` is true, or is ``auto`` and the images share one size and fit
    ``data.memory_budget_gb``; a folder that streams is packed once into the data cache."""
    if device is not None:
        check_decode(data, device)
    what = resolve_spec(data.name, plugins)
    if what.kind != "folder":
        opened = _open_named(what, plugins, "train")
        return _nonempty(opened if isinstance(opened, ImageData) else _from_store(opened, data))
    assert what.path is not None
    root = what.path.resolve()
    if data.in_memory is True:
        return load_folder(root, data.image_size)
    if data.in_memory == "auto":
        listing = scan_images(root)
        if folder_fits(listing.files, data.image_size, data.memory_budget_gb * 2**30):
            listing.warn(root)
            try:
                return load_folder(root, data.image_size, files=listing.files)
            except DataError as exc:
                if "different sizes" not in str(exc):
                    raise
                log.info("%s; streaming it from a packed store instead", exc)
    from .store import cached_store

    return _nonempty(_from_store(cached_store(root, on_progress=on_progress), data))


def _from_store(store: Store, data: DataConfig) -> TrainingSource:
    """A store held in RAM when it fits (``data.in_memory``), else streamed."""
    store.use_batch_reads(data.batch_reads)
    size = store.uniform_size
    decoded = len(store) * 3 * (size[0] * size[1] if size else 0)
    fits = size is not None and decoded <= data.memory_budget_gb * 2**30
    if data.in_memory is True and size is None:
        raise ConfigError(
            f"data.in_memory=true: {store.description} holds images of different sizes; "
            "use data.in_memory=auto to stream it"
        )
    if data.in_memory is True or (data.in_memory == "auto" and fits):
        return store.to_imagedata()
    return StoreSource(store)


def sample_images(data: DataConfig, plugins: Plugins, n: int, seed: int = 0) -> ImageData:
    """``n`` seeded images of the data a config names, decoded at the training size (the central
    square when sizes differ) without decoding the rest: what ``export`` verifies on and
    ``show-batch`` draws."""
    source = open_training_data(data, plugins)
    pick = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    if isinstance(source, ImageData):
        return source.select(pick)
    size = data.image_size or (source.uniform_size[0] if source.uniform_size else None)
    return source.store.to_memory(size, source.index[pick.numpy()])
