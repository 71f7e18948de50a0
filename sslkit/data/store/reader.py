"""Reading a packed store: random access to any sample by its index row, with no tar scanning.

``read_bytes`` is one ``os.pread`` on a shard opened lazily in the calling process (file
descriptors are dropped when the store is pickled and reopened after a fork), so a ``Store``
can go to DataLoader worker processes as is.

What is read is checked, cheaply: the index (and the class names) against the manifest's sha256
when the store opens, every sample against its checksum in the index as it is read (a raw batch
after its batch read, a JPEG payload before it is decoded). Any mismatch is a one-line
:class:`DataError` naming the shard, the sample and ``sslkit data verify``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from . import format as fmt
from .uring import BatchReads, Mode

if TYPE_CHECKING:
    from ..datasets import ImageData

log = logging.getLogger(__name__)


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


def _check_meta(path: Path, manifest: dict[str, Any], names: tuple[str, ...]) -> None:
    """``names`` (index, class names) against the manifest's sha256: an edited index would read
    other pixels or labels without a word. Chunked, so memory does not grow with the store
    (~0.1 s for the 56 MB index of a million images: benchmarks/data_scale.py, "open_s")."""
    for name in names:
        expected = manifest["meta"].get(name)
        if expected is None:
            continue  # a manifest that predates the hashes of this file
        try:
            digest = fmt.sha256_file(path / name)
        except OSError as exc:
            raise DataError(
                f"store '{path}': {name} is unreadable ({exc.strerror}); run 'sslkit data verify {path}' or re-pack it"
            ) from None
        if digest != expected:
            raise DataError(
                f"store '{path}': {name} fails its sha256 check (edited or damaged since packing); run 'sslkit data "
                f"verify {path}' and re-pack it"
            )


def _batch_buffer(b: int, h: int, w: int, out: Tensor | None) -> Tensor:
    """uint8 [b, h, w, 3]: the first ``b`` images of ``out``, or a new tensor."""
    if out is None:
        return torch.empty((b, h, w, 3), dtype=torch.uint8)
    if out.dtype != torch.uint8 or out.device.type != "cpu" or not out.is_contiguous() or out.dim() != 4:
        raise ValueError("read_batch(out=...): give a contiguous uint8 CPU tensor [B, H, W, 3]")
    if tuple(out.shape[1:]) != (h, w, 3) or out.shape[0] < b:
        raise ValueError(f"read_batch(out=...): shape {tuple(out.shape)} cannot hold {b} images of {h}x{w}x3")
    return out[:b]


class Store:
    """A packed store opened for reading (``Store.open(path)``)."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        index: np.ndarray,
        classes: list[str],
        batch_reads: Mode = "auto",
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.index = index  # memory-mapped: shared by DataLoader workers, paged in as used
        self.classes = classes
        self._files: list[str] | None = None
        self.encoding: str = manifest["encoding"]
        self.mean: tuple[float, float, float] = tuple(manifest["mean"])
        self.std: tuple[float, float, float] = tuple(manifest["std"])
        self.checked = manifest["format"] == fmt.FORMAT  # samples carry checksums (format 2 on)
        self._shards = [s["name"] for s in manifest["shards"]]
        self._bytes = [s["bytes"] for s in manifest["shards"]]
        self._fds: dict[int, int] = {}
        self._fd_of = np.full(len(self._shards), -1, dtype=np.int32)  # _fds as an array: a batch's fds in one take
        self._layout: tuple[np.ndarray, np.ndarray, np.ndarray, int] | None = None  # see _raw_layout
        self._starts: list[int] = []  # first sample of each shard, and the count at the end
        self._pid = os.getpid()
        self._reads = BatchReads(batch_reads)

    @classmethod
    def open(cls, path: str | Path, batch_reads: Mode = "auto") -> Store:
        """Open the store at ``path``; ``batch_reads`` is how raw batches are read (``data.batch_reads``:
        auto, uring or pread). The index and class names are checked against the manifest's sha256."""
        path = Path(path).expanduser()
        manifest = fmt.read_manifest(path)
        _check_meta(path, manifest, (fmt.INDEX, fmt.CLASSES))
        try:
            index = np.load(path / fmt.INDEX, mmap_mode="r", allow_pickle=False)
            classes = json.loads((path / fmt.CLASSES).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"store '{path}': unreadable index ({type(exc).__name__}); run 'sslkit data verify {path}' or "
                "re-pack it"
            ) from None
        columns = fmt.COLUMNS[manifest["format"]]
        if index.ndim != 2 or index.shape != (manifest["images"], columns) or (manifest["labelled"] and not classes):
            raise DataError(
                f"store '{path}': index does not match {fmt.MANIFEST}; run 'sslkit data verify {path}' or re-pack it"
            )
        if manifest["format"] != fmt.FORMAT:
            log.warning(
                "store '%s' was packed by an older sslkit (%s): its samples carry no checksums, so damage inside an "
                "image goes unnoticed until 'sslkit data verify'; run 'sslkit data pack' again (into a new folder) "
                "to add them",
                path,
                manifest["format"],
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
                text = (self.path / fmt.FILES).read_bytes()
                if hashlib.sha256(text).hexdigest() != self.manifest["meta"].get(fmt.FILES):
                    raise ValueError("sha256 mismatch")
                files = json.loads(text)
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"store '{self.path}': unreadable or changed {fmt.FILES} ({exc}); run 'sslkit data "
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
        return np.array(self.index[:, [fmt.HEIGHT, fmt.WIDTH]])

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

    # -- how batches are read --------------------------------------------------------------------
    @property
    def batch_reads(self) -> Mode:
        """``data.batch_reads``: "auto" (io_uring where available), "uring" (or an error), "pread"."""
        return self._reads.mode

    def use_batch_reads(self, mode: Mode) -> None:
        """Read raw batches as ``mode`` says from now on (a one-line ConfigError: "uring" where io_uring is not)."""
        if mode != self._reads.mode:
            self._reads.close()
            self._reads = BatchReads(mode)

    @property
    def batch_reader(self) -> str:
        """How ``read_batch`` reads raw batches in this process: "io_uring" or "preadv"."""
        return self._reads.kind

    # -- reading -------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}  # descriptors belong to one process
        state["_fd_of"] = np.full(len(self._shards), -1, dtype=np.int32)
        state["_layout"] = None
        state["index"] = None  # mapped again on arrival, not copied through the pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Checked against the manifest when the store was opened; workers map the same file.
        self.index = np.load(self.path / fmt.INDEX, mmap_mode="r", allow_pickle=False)
        self._pid = os.getpid()

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in getattr(self, "_fds", {}).values():
                os.close(fd)
        reads = getattr(self, "_reads", None)
        if reads is not None:
            reads.close()

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked: the parent's descriptors share its file offsets
            self._fds, self._pid = {}, os.getpid()
            self._fd_of = np.full(len(self._shards), -1, dtype=np.int32)
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
            self._fd_of[shard] = fd
        return fd

    def _bad(self, shard: int) -> str:
        return (
            f"store '{self.path}': shard {self._shards[shard]} is unreadable; run 'sslkit data verify {self.path}' "
            "and re-pack it"
        )

    def _damaged(self, shard: int, sample: int) -> DataError:
        return DataError(
            f"store '{self.path}': sample {sample} in shard {self._shards[shard]} fails its checksum (damaged or "
            f"changed since packing); run 'sslkit data verify {self.path}' and re-pack it"
        )

    def read_bytes(self, i: int) -> bytearray:
        """The stored payload of sample ``i`` (.npy or JPEG bytes), in a writable buffer, checked
        against the sample's checksum."""
        shard, offset, size = (int(v) for v in self.index[i, :3])
        buf = bytearray(size)
        if os.preadv(self._fd(shard), [buf], offset) != size:
            raise DataError(f"{self._bad(shard)} (sample {i} is cut short)")
        if self.checked and self._payload_checksum(buf, shard, i) != int(self.index[i, fmt.CHECKSUM]):
            raise self._damaged(shard, i)
        return buf

    def _payload_checksum(self, payload: bytearray, shard: int, i: int) -> int:
        """What the index's checksum covers: a raw sample's pixel bytes, a JPEG's whole payload."""
        if self.encoding != "raw":
            return fmt.checksum(payload)
        try:
            start, _ = fmt.npy_data_offset(payload)
        except (ValueError, SyntaxError, IndexError):
            raise self._damaged(shard, i) from None  # the .npy header itself is damaged
        return fmt.checksum(memoryview(payload)[start:])

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

    def read_batch(self, indices: np.ndarray | list[int], out: Tensor | None = None) -> Tensor:
        """Samples ``indices`` as one uint8 tensor [B, 3, H, W] (same-size stores).

        Raw stores skip per-sample parsing: every pixel block is read straight into its row
        of the batch (one io_uring call a batch, or one pread an image), then the batch's
        checksums are compared with the index. ``out``: a contiguous uint8 tensor [>= B, H, W, 3]
        to read into (pinned, so that its copy to a GPU is asynchronous); the result is then its
        first B images seen as [B, 3, H, W] (channels last in memory, as without ``out``).
        """
        idx = np.asarray(indices, dtype=np.int64)
        if self.uniform_size is None:
            raise DataError(f"{self.description}: images differ in size; read them one by one with store.read(i)")
        h, w = self.uniform_size
        images = _batch_buffer(len(idx), h, w, out)  # uint8 [B, H, W, 3]
        if self.encoding != "raw":
            result = images.permute(0, 3, 1, 2)
            for row, i in enumerate(idx.tolist()):
                result[row] = self.read(i)
            return result
        if len(idx):
            self._read_raw(idx, images.numpy().reshape(len(idx), h * w * 3))
        return images.permute(0, 3, 1, 2)

    def _read_raw(self, idx: np.ndarray, rows: np.ndarray) -> None:
        """Pixel blocks of raw samples ``idx`` into ``rows`` (uint8 [B, step]), checked."""
        # Each image read straight into its row of the batch, nothing mapped, so memory does not
        # grow with the store (a memory map was faster only until its pages, ~64 KB mapped per
        # fault, had to be released from RSS). All of a batch's reads go to the kernel in one
        # io_uring call where Linux offers it: one os.preadv an image is bound by the system
        # call cost (~2 us); benchmarks/data_scale.py measures both.
        shards, offsets, sums, header = self._raw_layout()
        batch_shards = shards[idx]
        fds = self._fd_of[batch_shards] if self._pid == os.getpid() else np.full(len(idx), -1, dtype=np.int32)
        if (fds < 0).any():  # shards not opened yet in this process
            for shard in np.unique(batch_shards[fds < 0]).tolist():
                self._fd(shard)
            fds = self._fd_of[batch_shards]
        got = self._reads.read(fds, offsets[idx] + header, rows)
        if (got != rows.shape[1]).any():
            row = int(np.flatnonzero(got != rows.shape[1])[0])
            raise DataError(f"{self._bad(int(batch_shards[row]))} (sample {int(idx[row])} is cut short)")
        if self.checked:
            wrong = np.flatnonzero(fmt.batch_checksums(rows) != sums[idx])
            if len(wrong):
                raise self._damaged(int(batch_shards[wrong[0]]), int(idx[wrong[0]]))

    def _raw_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(shard [N] int32, pixel offset [N] int64, checksum [N] int64, .npy header length) of a raw
        same-size store, read once from the index into compact arrays (20 bytes an image), whose
        mapped pages are then released: reading must not map the whole index either."""
        if self._layout is None:
            n = len(self.index)
            shard_of, offsets = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int64)
            sums = np.zeros(n, dtype=np.int64)
            index_map = getattr(self.index, "_mmap", None)  # numpy.memmap's own map (np.load mmap_mode)
            first_size = int(self.index[0, fmt.SIZE]) if n else 0
            for start in range(0, n, 1 << 16):  # in chunks, releasing the index's pages as it goes
                chunk = np.asarray(self.index[start : start + (1 << 16)])
                if not (chunk[:, fmt.SIZE] == first_size).all():
                    raise DataError(
                        f"store '{self.path}': raw samples of different byte sizes; run 'sslkit data verify'"
                    )
                rows = slice(start, start + len(chunk))
                shard_of[rows], offsets[rows] = chunk[:, fmt.SHARD], chunk[:, fmt.OFFSET]
                if self.checked:
                    sums[rows] = chunk[:, fmt.CHECKSUM]
                if index_map is not None and hasattr(mmap, "MADV_DONTNEED"):
                    index_map.madvise(mmap.MADV_DONTNEED)
            if (np.diff(shard_of) < 0).any():
                raise DataError(f"store '{self.path}': index out of shard order; run 'sslkit data verify'")
            header, _ = fmt.npy_data_offset(self.read_bytes(0)[:256])
            self._starts = np.searchsorted(shard_of, np.arange(len(self._shards) + 1)).tolist()
            self._layout = (shard_of, offsets, sums, header)
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
            return _raw_to_device(payloads, device)
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


def _raw_to_device(payloads: list[bytes | bytearray], device: torch.device) -> list[Tensor]:
    """Raw payloads -> uint8 [3, h, w] images on ``device``: their pixels gathered into one staging
    buffer, pinned for CUDA (a copy from pageable memory would make the host wait), then one copy."""
    arrays = [fmt.parse_npy(p) for p in payloads]  # [h, w, 3] views of the payloads
    ends = np.cumsum([a.size for a in arrays]).tolist()
    staging = torch.empty(ends[-1], dtype=torch.uint8, pin_memory=device.type == "cuda")
    flat = staging.numpy()
    for a, end in zip(arrays, ends, strict=True):
        flat[end - a.size : end] = a.reshape(-1)
    # The caching host allocator keeps a pinned block until the copy that reads it has finished.
    moved = staging.to(device, non_blocking=True)
    return [moved[end - a.size : end].view(a.shape).permute(2, 0, 1) for a, end in zip(arrays, ends, strict=True)]
