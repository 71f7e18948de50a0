"""Reading a packed store: random access to any sample by its index row, with no tar scanning.

``read_bytes`` is one ``os.pread`` on a shard opened lazily in the calling process (file
descriptors are dropped when the store is pickled and reopened after a fork), so a ``Store``
can go to DataLoader worker processes as is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from . import format as fmt
from .uring import ReadRing

if TYPE_CHECKING:
    from ..datasets import ImageData

BatchReads = Literal["auto", "pread"]


def _decode_jpeg(payload: bytearray) -> Tensor:
    # torchvision's libjpeg-turbo beats PIL on 256-px q90 JPEGs, one thread, 2-core CPU:
    # 2,390 vs 1,906 img/s (341x256); PIL's convert + numpy copy cost the rest. torchvision
    # 0.29 deprecates its image I/O (a DeprecationWarning per call, hidden by default).
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # a torchvision without image I/O: PIL gives the same pixels, slower
        return _decode_pil(payload)
    return decode_jpeg(torch.frombuffer(payload, dtype=torch.uint8), mode=ImageReadMode.RGB)


def _decode_pil(payload: bytearray) -> Tensor:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(payload)) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


class Store:
    """A packed store opened for reading (``Store.open(path)``)."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        index: np.ndarray,
        classes: list[str],
        batch_reads: BatchReads = "auto",
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.index = index  # memory-mapped: shared by DataLoader workers, paged in as used
        self.classes = classes
        self._files: list[str] | None = None
        self.encoding: str = manifest["encoding"]
        self.mean: tuple[float, float, float] = tuple(manifest["mean"])
        self.std: tuple[float, float, float] = tuple(manifest["std"])
        self._shards = [s["name"] for s in manifest["shards"]]
        self._bytes = [s["bytes"] for s in manifest["shards"]]
        self._fds: dict[int, int] = {}
        self._layout: tuple[np.ndarray, np.ndarray, int] | None = None  # see _raw_layout
        self._starts: list[int] = []  # first sample of each shard, and the count at the end
        self._pid = os.getpid()
        self.batch_reads = batch_reads
        self._uring: ReadRing | None = None
        self._ring_read_first = True

    @classmethod
    def open(cls, path: str | Path, batch_reads: BatchReads = "auto") -> Store:
        path = Path(path).expanduser()
        manifest = fmt.read_manifest(path)
        try:
            index = np.load(path / fmt.INDEX, mmap_mode="r", allow_pickle=False)
            classes = json.loads((path / fmt.CLASSES).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"store '{path}': unreadable index ({type(exc).__name__}); run 'sslkit data verify {path}' or "
                "re-pack it"
            ) from None
        if index.ndim != 2 or index.shape != (manifest["images"], 6) or (manifest["labelled"] and not classes):
            raise DataError(
                f"store '{path}': index does not match {fmt.MANIFEST}; run 'sslkit data verify {path}' or re-pack it"
            )
        return cls(path, manifest, index, classes, batch_reads)

    # -- what it holds -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def files(self) -> list[str]:
        """Each sample's source file name, relative (read on first use: a million names cost ~100 MB)."""
        if self._files is None:
            try:
                files = json.loads((self.path / fmt.FILES).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"store '{self.path}': unreadable {fmt.FILES} ({type(exc).__name__}); run 'sslkit data "
                    f"verify {self.path}'"
                ) from None
            if len(files) != len(self):
                raise DataError(
                    f"store '{self.path}': {fmt.FILES} does not match the index; run 'sslkit data verify {self.path}'"
                )
            self._files = files
        return self._files

    @property
    def labels(self) -> np.ndarray | None:
        return np.array(self.index[:, fmt.LABEL]) if self.manifest.get("labelled") else None

    @property
    def sizes(self) -> np.ndarray:
        return np.array(self.index[:, fmt.HEIGHT :])

    @property
    def uniform_size(self) -> tuple[int, int] | None:
        sizes = self.manifest["sizes"]
        return tuple(sizes["min"]) if sizes["uniform"] else None

    @property
    def fingerprint(self) -> str:
        m = self.manifest
        text = json.dumps([m["format"], m["images"], m["encoding"], [s["sha256"] for s in m["shards"]], m["meta"]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def description(self) -> str:
        size = self.uniform_size
        shape = f"{size[1]}x{size[0]}" if size else "mixed sizes"
        return f"store '{self.path}' ({len(self):,} images, {self.encoding} {shape})"

    # -- reading -------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}  # descriptors belong to one process
        state["_layout"] = None
        state["_uring"] = None
        state["index"] = None  # mapped again on arrival, not copied through the pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.index = np.load(self.path / fmt.INDEX, mmap_mode="r", allow_pickle=False)
        self._pid = os.getpid()

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in getattr(self, "_fds", {}).values():
                os.close(fd)
        ring = getattr(self, "_uring", None)
        if ring is not None and not ring.broken:
            ring.close()

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked: the parent's descriptors share its file offsets
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard)
        if fd is None:
            path = self.path / self._shards[shard]
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise DataError(f"{self._bad(shard)} ({exc.strerror})") from None
            if os.fstat(fd).st_size != self._bytes[shard]:
                os.close(fd)
                raise DataError(f"{self._bad(shard)} (size differs from the manifest: truncated or changed)")
            self._fds[shard] = fd
        return fd

    def _bad(self, shard: int) -> str:
        return (
            f"store '{self.path}': shard {self._shards[shard]} is unreadable; run 'sslkit data verify {self.path}' "
            "and re-pack it"
        )

    def read_bytes(self, i: int) -> bytearray:
        """The stored payload of sample ``i`` (.npy or JPEG bytes), in a writable buffer."""
        shard, offset, size = (int(v) for v in self.index[i, :3])
        buf = bytearray(size)
        if os.preadv(self._fd(shard), [buf], offset) != size:
            raise DataError(f"{self._bad(shard)} (sample {i} is cut short)")
        return buf

    def _decode(self, i: int, payload: bytearray) -> Tensor:
        try:
            if self.encoding == "raw":
                return torch.from_numpy(fmt.parse_npy(payload)).permute(2, 0, 1)
            return _decode_jpeg(payload)
        except (ValueError, RuntimeError, SyntaxError) as exc:
            shard = int(self.index[i, fmt.SHARD])
            raise DataError(f"{self._bad(shard)} (sample {i}: {str(exc).splitlines()[0][:80]})") from None

    def read(self, i: int) -> Tensor:
        """Sample ``i`` decoded on the CPU: uint8 [3, H, W]."""
        return self._decode(i, self.read_bytes(i))

    def read_batch(self, indices: np.ndarray | list[int]) -> Tensor:
        """Samples ``indices`` as one uint8 tensor [B, 3, H, W] (same-size stores).

        Raw stores skip per-sample parsing: every pixel block is read straight into its row
        of the batch (one pread each), which is what DataLoader workers should call.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if self.uniform_size is None:
            raise DataError(f"{self.description}: images differ in size; read them one by one with store.read(i)")
        h, w = self.uniform_size
        if self.encoding != "raw" or len(idx) == 0:
            return (
                torch.stack([self.read(i) for i in idx.tolist()])
                if len(idx)
                else torch.empty((0, 3, h, w), dtype=torch.uint8)
            )
        shards, offsets, header = self._raw_layout()
        step = h * w * 3
        out = np.empty((len(idx), step), dtype=np.uint8)
        rows = out.data.cast("B")  # the array's own buffer, one byte per element
        # Each image read straight into its row of the batch, nothing mapped, so memory does not
        # grow with the store (a memory map was faster only until its pages, ~64 KB mapped per
        # fault, had to be released from RSS). All of a batch's reads go to the kernel in one
        # io_uring call where Linux offers it: one os.preadv an image is bound by the system
        # call cost (~2 us); benchmarks/data_scale.py measures both.
        fds = {shard: self._fd(shard) for shard in np.unique(shards[idx]).tolist()}
        ring = self._ring()
        if ring is not None:
            fd_of = np.full(len(self._shards), -1, dtype=np.int32)
            fd_of[list(fds)] = list(fds.values())
            addresses = out.ctypes.data + step * np.arange(len(idx), dtype=np.uint64)
            got = ring.read(fd_of[shards[idx]], offsets[idx] + header, addresses, step, owner=out)
            if (got == -errno.EINVAL).all() and self._ring_read_first:  # a kernel without IORING_OP_READ
                self._uring, self.batch_reads = None, "pread"
                return self.read_batch(idx)
            self._ring_read_first = False
            if (got != step).any():
                shard = int(shards[idx][np.flatnonzero(got != step)[0]])
                raise DataError(f"{self._bad(shard)} (a sample is cut short)")
        else:
            batch = zip(shards[idx].tolist(), (offsets[idx] + header).tolist(), strict=True)
            for row, (shard, offset) in enumerate(batch):
                if os.preadv(fds[shard], [rows[row * step : (row + 1) * step]], offset) != step:
                    raise DataError(f"{self._bad(shard)} (a sample is cut short)")
        return torch.from_numpy(out.reshape(len(idx), h, w, 3)).permute(0, 3, 1, 2)

    @property
    def batch_reader(self) -> str:
        """How ``read_batch`` reads raw batches in this process: "io_uring" or "preadv"."""
        return "io_uring" if self._ring() is not None else "preadv"

    def _ring(self) -> ReadRing | None:
        """This process's io_uring for batch reads (``batch_reads``: "auto" uses one where the
        system offers it, "pread" never); None means one ``os.preadv`` an image."""
        if self.batch_reads == "pread":
            return None
        if self._uring is not None and (self._uring.pid != os.getpid() or self._uring.broken):
            self._uring = None  # a forked parent's ring, or one a half-read batch still writes into
        if self._uring is None:
            self._uring = ReadRing.open()
            self._ring_read_first = True
            if self._uring is None:
                self.batch_reads = "pread"
        return self._uring

    def _raw_layout(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(shard [N] int32, pixel offset [N] int64, .npy header length) of a raw same-size store,
        read once from the index into compact arrays (12 bytes an image), whose mapped pages are
        then released: reading must not map the whole index either."""
        if self._layout is None:
            n = len(self.index)
            shard_of, offsets = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int64)
            index_map = getattr(self.index, "_mmap", None)  # numpy.memmap's own map (np.load mmap_mode)
            first_size = int(self.index[0, 2]) if n else 0
            for start in range(0, n, 1 << 16):  # in chunks, releasing the index's pages as it goes
                chunk = np.asarray(self.index[start : start + (1 << 16)])
                if not (chunk[:, 2] == first_size).all():
                    raise DataError(
                        f"store '{self.path}': raw samples of different byte sizes; run 'sslkit data verify'"
                    )
                shard_of[start : start + len(chunk)], offsets[start : start + len(chunk)] = chunk[:, 0], chunk[:, 1]
                if index_map is not None and hasattr(mmap, "MADV_DONTNEED"):
                    index_map.madvise(mmap.MADV_DONTNEED)
            if (np.diff(shard_of) < 0).any():
                raise DataError(f"store '{self.path}': index out of shard order; run 'sslkit data verify'")
            header, _ = fmt.npy_data_offset(self.read_bytes(0)[:256])
            self._starts = np.searchsorted(shard_of, np.arange(len(self._shards) + 1)).tolist()
            self._layout = (shard_of, offsets, header)
        return self._layout

    def to_imagedata(self, indices: np.ndarray | list[int] | None = None) -> ImageData:
        """Every (or the selected) image decoded into one in-memory tensor; same size images only."""
        from ..datasets import ImageData

        if self.uniform_size is None:
            lo, hi = self.manifest["sizes"]["min"], self.manifest["sizes"]["max"]
            raise DataError(
                f"{self.description}: images range from {lo[1]}x{lo[0]} to {hi[1]}x{hi[0]}, so they cannot be "
                "one tensor; "
                "read them with store.read(i) or re-pack with one size"
            )
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        h, w = self.uniform_size
        images = torch.empty((len(idx), 3, h, w), dtype=torch.uint8)
        for start in range(0, len(idx), 4096):  # bounded temporary: one block of raw rows at a time
            images[start : start + 4096] = self.read_batch(idx[start : start + 4096])
        labels = self.labels
        return ImageData(
            images,
            None if labels is None else torch.from_numpy(labels[idx]),
            list(self.classes),
            self.description,
            self.mean,
            self.std,
            [self.files[i] for i in idx.tolist()],
        )

    @staticmethod
    def decode_gpu(payloads: list[bytes | bytearray], device: torch.device | str) -> list[Tensor]:
        """Decode a batch on ``device``: nvJPEG (batched) for JPEG payloads; raw ones are copied over."""
        if not payloads:
            return []
        device = torch.device(device)
        if bytes(payloads[0][:6]) == b"\x93NUMPY":
            return [
                torch.from_numpy(fmt.parse_npy(bytearray(p))).permute(2, 0, 1).to(device, non_blocking=True)
                for p in payloads
            ]
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(p) if isinstance(p, bytes) else p, dtype=torch.uint8) for p in payloads]
        if device.type == "cpu":
            return [decode_jpeg(d, mode=ImageReadMode.RGB) for d in data]
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)

    def to_memory(self, size: int | None, index: np.ndarray | None = None) -> ImageData:
        """Every (or the selected) image decoded into RAM at one size: the central square resampled
        to ``size`` when images differ (the probes' and ``show-batch``'s path, as a folder with
        ``data.image_size`` is); same-size images as stored when ``size`` is None."""
        from ...errors import ConfigError
        from ..augment import center_boxes, resample_boxes
        from ..batches import pad_batch
        from ..datasets import ImageData

        index = np.arange(len(self)) if index is None else index
        if size is None:
            if self.uniform_size is None:
                raise ConfigError(f"{self.description} holds images of different sizes; set data.image_size")
            return self.to_imagedata(index)
        out = torch.empty(len(index), 3, size, size, dtype=torch.uint8)
        for start in range(0, len(index), 256):  # bounded temporary: 256 decoded images at a time
            batch = pad_batch([self.read(int(i)) for i in index[start : start + 256]])
            assert batch.sizes is not None  # pad_batch always records the sizes
            x = resample_boxes(batch.images, center_boxes(batch.sizes), size)  # float [b, 3, size, size]
            out[start : start + len(batch.images)] = x.round_().clamp_(0, 255).to(torch.uint8)
        labels = None if self.labels is None else torch.from_numpy(np.asarray(self.labels)[index].astype(np.int64))
        files = [self.files[int(i)] for i in index] if self.files else []
        return ImageData(out, labels, list(self.classes), self.description, tuple(self.mean), tuple(self.std), files)
