"""What the training loop reads: images in RAM or a streamed packed store, behind one interface.

Small data of one size is decoded once into a uint8 tensor (:class:`ImageData`): the fastest
path there is, and the default whenever it fits ``data.memory_budget_gb``. Anything else (mixed
sizes, ImageNet-scale collections) is a packed store (:mod:`sslkit.data.store`) streamed by
DataLoader workers with memory bounded by the prefetch depth, never by the dataset
(:mod:`sslkit.data.opener` decides which). Not to be confused with
:mod:`sslkit.data.store.sources`, the inputs a pack reads.

Both are training sources: ``len``, ``select(index)``, ``description``, ``classes``, ``labels``,
``uniform_size``, ``stats()`` and :func:`fingerprint`; :func:`iterate_batches` turns a list of
index batches into uint8 batches on the device, with no host-device synchronisation per step
for data already on the GPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .batches import Batch, pad_batch, pad_images
from .datasets import ImageData

if TYPE_CHECKING:
    from .store import Store


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


TrainingSource = ImageData | StoreSource


def fingerprint(source: TrainingSource) -> str:
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
    source: TrainingSource,
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
    buffers in turn (as ``_pinned_batches``), so the copy to the device is asynchronous; a buffer
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
    out, sizes = pad_images(images)  # one batched operation where possible
    if out.device.type == "cuda":  # from pinned memory the copy is asynchronous: no wait per step
        sizes = sizes.pin_memory()
    return Batch(out, sizes.to(out.device, non_blocking=True))


def _memory_batches(images: Tensor, batches: Sequence[Tensor], device: torch.device) -> Iterator[Batch]:
    if images.device == device and device.type != "cpu":
        # Data already on the device (the default CIFAR path on a GPU): ``images[idx.to(device)]``
        # would copy each step's indices from pageable host memory, a stream sync per step.
        for idx in epoch_indices_on(batches, device):
            yield Batch(images.index_select(0, idx))
        return
    if device.type == "cuda":
        yield from _pinned_batches(images, batches, device)
        return
    for idx in batches:
        yield Batch(images[idx.to(images.device)].to(device))


def epoch_indices_on(batches: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """Index batches (CPU int64 [b_k] each) -> the same batches on ``device``: one copy of them all
    (asynchronous, from pinned memory on CUDA), then views of it, so the steps copy nothing."""
    if not batches or all(b.device == device for b in batches):
        return list(batches)
    counts = [int(b.numel()) for b in batches]
    flat = torch.cat([b.reshape(-1) for b in batches])  # [sum b_k] on the host
    if device.type == "cuda":
        flat = flat.pin_memory()  # the caching host allocator keeps it until the copy has run
    return list(flat.to(device, non_blocking=True).split(counts))


def _pinned_batches(images: Tensor, batches: Sequence[Tensor], device: torch.device) -> Iterator[Batch]:
    """Host-resident data for a GPU: gather into two pinned buffers in turn, so the copy is truly
    asynchronous (``images[idx]`` would be a fresh unpinned tensor: a synchronous copy)."""
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
