"""Where the training loop's images come from: RAM or a packed store, behind one interface.

Small data of one size is decoded once into a uint8 tensor (:class:`ImageData`): the fastest
path there is, and the default whenever it fits ``data.memory_budget_gb``. Anything else (mixed
sizes, ImageNet-scale collections) is a packed store (:mod:`sslkit.data.store`) streamed by
DataLoader workers with memory bounded by the prefetch depth, never by the dataset.

Both are "sources": ``len``, ``select(index)``, ``description``, ``classes``, ``labels``,
``uniform_size``, ``stats()`` and :func:`fingerprint`; :func:`iterate_batches` turns a list of
index batches into uint8 batches on the device.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import ConfigError, DataError
from ..files import walk_images
from .datasets import ImageData, load_dataset, load_folder

if TYPE_CHECKING:
    from ..config import DataConfig
    from ..plugins import Plugins
    from .store import Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
HEADER_SAMPLE = 64  # image headers read to guess whether a folder holds one size


@dataclass
class Batch:
    """uint8 images [b, C, H, W] on the device, padded to the batch's largest image, and each
    image's own (h, w) inside the padding ([b, 2]; None when every image fills the tensor)."""

    images: Tensor
    sizes: Tensor | None = None

    def pin_memory(self) -> Batch:  # DataLoader(pin_memory=True) calls this on custom types
        return Batch(self.images.pin_memory(), None if self.sizes is None else self.sizes.pin_memory())


class StoreSource:
    """A packed store, or a subset of its samples, read in streaming."""

    def __init__(self, store: Store, index: np.ndarray | None = None) -> None:
        self.store = store
        self.index = np.arange(len(store), dtype=np.int64) if index is None else index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def description(self) -> str:
        d = self.store.description
        return d if len(self.index) == len(self.store) else f"{d}, {len(self.index):,} selected"

    @property
    def classes(self) -> list[str]:
        return list(self.store.classes)

    @property
    def labels(self) -> Tensor | None:
        labels = self.store.labels
        return None if labels is None else torch.from_numpy(np.asarray(labels)[self.index].astype(np.int64))

    @property
    def uniform_size(self) -> tuple[int, int] | None:
        return self.store.uniform_size

    @property
    def channels(self) -> int:
        return 3

    def select(self, index: Tensor) -> StoreSource:
        return StoreSource(self.store, self.index[index.numpy()])

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.store.mean), tuple(self.store.std)


Source = ImageData | StoreSource


def fingerprint(source: Source) -> str:
    """A short hash of the data's content: a resumed run checks it against the checkpoint's."""
    h = hashlib.sha1(f"{len(source)}|{source.classes}".encode())
    if isinstance(source, StoreSource):
        h.update(source.store.fingerprint.encode())
        h.update(source.index.tobytes())
        return h.hexdigest()[:16]
    images = source.images
    h.update(str(tuple(images.shape)).encode())
    step = max(1, images.shape[0] // 4096)  # every image of small data; an even sample of large data
    h.update(images[::step].contiguous().numpy().tobytes())
    if source.labels is not None:
        h.update(source.labels.numpy().tobytes())
    return h.hexdigest()[:16]


def is_store(path: Path) -> bool:  # a packed store, or an unfinished pack (Store.open says how to finish it)
    return (path / "manifest.json").is_file() or (path / ".pack-state.json").is_file()


def open_source(data: DataConfig, plugins: Plugins, on_progress: Progress | None = None) -> Source:
    """The training data a config names, in RAM or streamed (``data.in_memory``, see module doc)."""
    spec = data.name
    if spec in plugins.datasets:
        loaded = plugins.datasets.get(spec)("train", _data_root())
        if isinstance(loaded, ImageData):
            return loaded
        return _from_store(loaded, data)
    path = Path(spec).expanduser()
    if path.is_dir() and is_store(path):
        from .store import Store

        return _from_store(Store.open(path), data)
    if not path.is_dir() or data.in_memory is True:
        return load_dataset(spec, plugins, "train", data.image_size)  # its one-line errors for bad paths
    if data.in_memory == "auto" and _folder_fits(path, data):
        try:
            return load_folder(path, data.image_size)
        except DataError as exc:
            if "different sizes" not in str(exc):
                raise
            log.info("%s; streaming it from a packed store instead", exc)
    from .store import cached_store

    return _from_store(cached_store(path.resolve(), on_progress=on_progress), data)


def _data_root() -> Path:
    from .datasets import data_root

    return data_root()


def _from_store(store: Store, data: DataConfig) -> Source:
    from .store import Store

    if not isinstance(store, Store):
        raise DataError(f"dataset '{data.name}' returned {type(store).__name__}, not sslkit ImageData or Store")
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


def _folder_fits(path: Path, data: DataConfig) -> bool:
    """Whether a folder, decoded, is one size and fits the RAM budget (from a sample of headers)."""
    files = walk_images(path)
    if not files:
        return True  # load_folder says "no images" in one line
    if data.image_size is not None:
        return len(files) * 3 * data.image_size**2 <= data.memory_budget_gb * 2**30
    step = max(1, len(files) // HEADER_SAMPLE)
    sizes = set()
    for f in files[::step][:HEADER_SAMPLE]:
        try:
            with Image.open(f) as im:
                sizes.add(im.size)
        except Exception:  # unreadable files are skipped later, by whichever path reads them
            continue
    if len(sizes) != 1:
        return False
    w, h = sizes.pop()
    return len(files) * 3 * w * h <= data.memory_budget_gb * 2**30


def store_to_memory(store: Store, size: int | None, index: np.ndarray | None = None) -> ImageData:
    """Decode a store (or some samples) into RAM at one size: the central square resampled to
    ``size`` when images differ (the probes' and ``show-batch``'s path, as a folder with
    ``data.image_size`` is)."""
    from .augment import center_boxes, resample_boxes

    index = np.arange(len(store)) if index is None else index
    if size is None:
        if store.uniform_size is None:
            raise ConfigError(f"{store.description} holds images of different sizes; set data.image_size")
        return store.to_imagedata(index)
    out = torch.empty(len(index), 3, size, size, dtype=torch.uint8)
    for start in range(0, len(index), 256):
        chunk = [store.read(int(i)) for i in index[start : start + 256]]
        batch = pad_batch(chunk)
        assert batch.sizes is not None  # pad_batch always records the sizes
        x = resample_boxes(batch.images, center_boxes(batch.sizes), size)
        out[start : start + len(chunk)] = x.round_().clamp_(0, 255).to(torch.uint8)
    labels = None if store.labels is None else torch.from_numpy(np.asarray(store.labels)[index].astype(np.int64))
    files = [store.files[int(i)] for i in index] if store.files else []
    return ImageData(out, labels, list(store.classes), store.description, tuple(store.mean), tuple(store.std), files)


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


class _BatchReader(torch.utils.data.Dataset):
    """Item k of the sampler is a whole batch of store indices: a worker reads and decodes it.

    ``decode=gpu`` leaves JPEG payloads encoded: the main process decodes them on the GPU."""

    def __init__(self, store: Store, encoded: bool) -> None:
        self.store = store
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, indices: np.ndarray) -> Batch | list[bytes] | _ReadFailure:
        try:
            if self.encoded:
                return [self.store.read_bytes(int(i)) for i in indices]
            return self.pixels(indices)
        except DataError as exc:  # raised in a worker, DataLoader would wrap it in a traceback
            return _ReadFailure(str(exc))

    def pixels(self, indices: np.ndarray, out: Tensor | None = None) -> Batch:
        """One batch; ``out``: a uint8 [>= b, H, W, 3] buffer a same-size store's batch is read into."""
        if self.store.uniform_size is not None:  # one tensor, raw pixels read straight into it; every
            return Batch(self.store.read_batch(indices, out=out))  # image fills it, as in RAM: no sizes
        return pad_batch([self.store.read(int(i)) for i in indices])


@dataclass
class _ReadFailure:
    """A worker's DataError, sent back as data: the main process raises it as the one line it was."""

    message: str


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def iterate_batches(
    source: Source,
    batches: Sequence[Tensor],
    device: torch.device,
    workers: int | None = None,
    decode: str = "cpu",
) -> Iterator[Batch]:
    """One uint8 :class:`Batch` on ``device`` per index tensor in ``batches`` (in order).

    RAM: gathered straight from the tensor (on the GPU when the data was moved there; into
    pinned buffers when it stayed on the host, so the copy overlaps compute). Store: read by
    ``workers`` DataLoader processes, two batches ahead each: memory is bounded by that depth.
    """
    if isinstance(source, ImageData):
        yield from _memory_batches(source.images, batches, device)
        return
    encoded = decode == "gpu" and device.type == "cuda" and source.store.encoding == "jpeg"
    if workers is None:
        # Raw same-size stores need no decoding: a batch is one io_uring call (or a pread an
        # image), faster in this process than the transfer from a worker (data_scale.py).
        raw = source.store.encoding == "raw" and source.uniform_size is not None
        workers = 0 if raw else default_workers()
    sampler = [source.index[b.numpy()] for b in batches]
    if workers == 0 and not encoded:  # read here, batch by batch: a DataLoader would only add its costs
        yield from _store_batches(_BatchReader(source.store, encoded=False), sampler, device)
        return
    loader = torch.utils.data.DataLoader(
        _BatchReader(source.store, encoded),
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda" and not encoded,
        prefetch_factor=2 if workers else None,
        collate_fn=None,
    )
    for item in loader:
        if isinstance(item, _ReadFailure):
            raise DataError(item.message)
        if encoded:
            decoded = type(source.store).decode_gpu(item, device)
            yield _pad_on_device(decoded)
        else:
            yield _to_device(item, device)


def _store_batches(reader: _BatchReader, sampler: list[np.ndarray], device: torch.device) -> Iterator[Batch]:
    """Batches read in this process. Same-size stores for a GPU: read straight into two pinned
    buffers in turn (as ``_memory_batches``), so the copy to the device is asynchronous; a buffer
    is reused once the copy out of it (two batches ago) has finished."""
    size = reader.store.uniform_size
    if device.type != "cuda" or size is None or not sampler:
        for indices in sampler:
            yield _to_device(reader.pixels(indices), device)
        return
    shape = (max(len(s) for s in sampler), *size, 3)  # [b, H, W, 3]: raw pixels are stored channels last
    buffers = [torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(2)]
    done: list[torch.cuda.Event | None] = [None, None]
    for k, indices in enumerate(sampler):
        slot = k % 2
        event = done[slot]
        if event is not None:
            event.synchronize()  # the copy out of this buffer two steps ago has finished
        batch = _to_device(reader.pixels(indices, out=buffers[slot]), device)
        event = torch.cuda.Event()
        event.record()
        done[slot] = event
        yield batch


def _to_device(batch: Batch, device: torch.device) -> Batch:
    sizes = None if batch.sizes is None else batch.sizes.to(device, non_blocking=True)
    return Batch(batch.images.to(device, non_blocking=True), sizes)


def _pad_on_device(images: list[Tensor]) -> Batch:
    from .store.reader import pad_images

    out, sizes = pad_images(images)  # one batched operation where possible
    return Batch(out, sizes.to(out.device, non_blocking=True))


def _memory_batches(images: Tensor, batches: Sequence[Tensor], device: torch.device) -> Iterator[Batch]:
    if images.device == device or device.type != "cuda":
        for idx in batches:
            yield Batch(images[idx.to(images.device)].to(device))
        return
    # Host-resident data for a GPU: gather into two pinned buffers in turn, so the copy is truly
    # asynchronous (``images[idx]`` would be a fresh unpinned tensor: a synchronous copy).
    shape = (int(batches[0].numel()), *images.shape[1:]) if batches else (0,)
    buffers = [torch.empty(shape, dtype=images.dtype).pin_memory() for _ in range(2)]
    done: list[torch.cuda.Event | None] = [None, None]
    for k, idx in enumerate(batches):
        slot = k % 2
        event = done[slot]
        if event is not None:
            event.synchronize()  # the copy out of this buffer two steps ago has finished
        buf = buffers[slot][: idx.numel()]
        torch.index_select(images, 0, idx, out=buf)
        x = buf.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        done[slot] = event
        yield Batch(x)


def sample_images(data: DataConfig, plugins: Plugins, n: int, seed: int = 0) -> ImageData:
    """``n`` seeded images of the data a config names, decoded at the training size (the central
    square when sizes differ) without decoding the rest: what ``export`` verifies on and
    ``show-batch`` draws."""
    source = open_source(data, plugins)
    pick = torch.randperm(len(source), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    if isinstance(source, ImageData):
        return source.select(pick)
    size = data.image_size or (source.uniform_size[0] if source.uniform_size else None)
    return store_to_memory(source.store, size, source.index[pick.numpy()])
