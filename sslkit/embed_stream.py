"""Embed a large image collection straight to disk: bounded memory, resumable (no torch for folders).

``sslkit embed`` on a million images must not hold a million rows in memory, and a run killed
after an hour must not start again from zero. :func:`embed_to_disk` therefore writes each
batch's rows into ``OUT.partial.npy`` (rows of readable images packed from the top, written with
``pwrite``: no memory map, so nothing another process does to the file can crash this one), and
every ``sync_seconds`` (and when it stops on an error) flushes them (``fdatasync``) and then
records how far it got in ``OUT.progress.json``. A SIGKILL therefore loses at most the rows since
the last record and never damages rows already counted. A re-run with the same encoder file and
the same inputs (names, sizes and modification times of the files; a store's manifest)
continues after the last recorded batch; anything else starts over, in a new file renamed over
the old one (a file is never re-created in place). At the end the collection is written in the
format of :mod:`sslkit.retrieval` (``OUT.npy``, ``OUT.files.txt``, ``OUT.json``, each atomically)
and the partial files are removed. The whole run holds ``OutputLock(OUT, "embedding",
folder=False)``: a second ``sslkit embed -o OUT`` is refused with a one-line error.

Inputs are image files and folders (:func:`sslkit.deploy.list_images`) or one packed sslkit store
(a folder with ``manifest.json``, see :mod:`sslkit.data.store`; reading a store needs torch).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .deploy import OnnxEncoder, decode, decoded_batches, fit, list_images, normalize
from .errors import DataError, DeployError
from .files import OutputLock, atomic_write_text, temporary_name
from .retrieval import save_collection

STATE_FORMAT = "sslkit.embed-progress/2"
STORE_MANIFEST = "manifest.json"  # what marks a folder as a packed store (sslkit.data.store.format.MANIFEST)
SYNC_SECONDS = 2.0  # rows flushed and progress recorded at most this often: a kill loses at most that much work


class Images(Protocol):
    """What :func:`embed_to_disk` reads: ``len`` images, each with a name and a path for the index."""

    description: str

    def __len__(self) -> int: ...
    def names(self) -> list[str]: ...
    def fingerprint(self) -> str: ...
    def path(self, i: int) -> Path: ...
    def decode(self, i: int, shape: Sequence[int]) -> np.ndarray | None: ...


@dataclass
class FileImages:
    files: list[Path]
    description: str = "image files"

    def __len__(self) -> int:
        return len(self.files)

    def names(self) -> list[str]:
        return [str(f) for f in self.files]

    def fingerprint(self) -> str:
        """Names, sizes and modification times: an image replaced under the same name changes it."""
        digest = hashlib.sha256()
        for f in self.files:
            try:
                st = os.stat(f)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # gone: decoding will skip it; still part of what was asked
                size, mtime = -1, -1
            digest.update(f"{f}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def path(self, i: int) -> Path:
        return self.files[i]

    def decode(self, i: int, shape: Sequence[int]) -> np.ndarray | None:
        return decode(self.files[i], shape)


class StoreImages:
    """A packed sslkit store; the index lists ``STORE/<source name>`` per row."""

    def __init__(self, path: Path) -> None:
        from .data.store import Store  # torch: only when a store is given

        self.store = Store.open(path)
        self.description = f"store {path}"

    def __len__(self) -> int:
        return len(self.store)

    def names(self) -> list[str]:
        return list(self.store.files)

    def fingerprint(self) -> str:
        """The manifest (it lists every shard's sha256) and the sample names."""
        digest = hashlib.sha256((Path(self.store.path) / STORE_MANIFEST).read_bytes())
        digest.update("\n".join(self.store.files).encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def path(self, i: int) -> Path:
        return Path(self.store.path) / self.store.files[i]

    def decode(self, i: int, shape: Sequence[int]) -> np.ndarray | None:
        """uint8 [C, H, W]; None for one payload the decoder rejects (skipped, like an unreadable
        file). A damaged store (a checksum mismatch, a cut shard) is a :class:`DataError` that
        ends the run with its one-line message and fix, never a skipped image."""
        try:
            image = self.store.read(i).numpy()  # uint8 [3, H, W]
        except DataError:
            raise
        except Exception:  # one undecodable payload (the decoders raise several types)
            return None
        if tuple(image.shape) == tuple(shape):
            return image
        return fit(Image.fromarray(image.transpose(1, 2, 0)), shape)


def open_images(inputs: Sequence[str | Path]) -> Images:
    """One packed store (a folder with ``manifest.json``), or image files and folders."""
    paths = [Path(p) for p in inputs]
    stores = [p for p in paths if (p / STORE_MANIFEST).is_file()]
    if stores:
        if len(paths) > 1:
            raise DeployError(f"'{stores[0]}' is a packed store: embed one store at a time, without other inputs")
        return StoreImages(stores[0])
    return FileImages(list_images(paths))


@dataclass
class EmbedResult:
    paths: tuple[Path, Path, Path]  # .npy, .files.txt, .json
    count: int  # rows written
    total: int  # images given
    skipped: list[str]  # names of unreadable images
    resumed_at: int  # images already done by an earlier run (0: a fresh start)
    seconds: float


def partial_paths(out: Path) -> tuple[Path, Path]:
    """(rows written so far, progress record) of an unfinished ``embed_to_disk`` into ``out``."""
    return out.with_name(out.stem + ".partial.npy"), out.with_name(out.stem + ".progress.json")


class RowFile:
    """``OUT.partial.npy``: a float32 ``.npy`` of [total, *shape] rows, written at offsets with ``pwrite``."""

    def __init__(self, path: Path, fd: int, offset: int, row_bytes: int) -> None:
        self.path, self.fd, self.offset, self.row_bytes = path, fd, offset, row_bytes

    @classmethod
    def create(cls, path: Path, total: int, shape: Sequence[int]) -> RowFile:
        """A new file (sparse until written) under a unique name, renamed over any old one."""
        row_bytes = 4 * int(np.prod(shape, dtype=np.int64))
        tmp = temporary_name(path)
        try:
            with open(tmp, "wb") as f:
                header = {"descr": "<f4", "fortran_order": False, "shape": (total, *shape)}
                np.lib.format.write_array_header_1_0(f, header)
                offset = f.tell()
                f.truncate(offset + total * row_bytes)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return cls(path, os.open(path, os.O_RDWR), offset, row_bytes)

    @classmethod
    def reopen(cls, path: Path, total: int, shape: Sequence[int]) -> RowFile | None:
        """The file of an earlier run, if it holds [total, *shape] float32 rows; else None."""
        try:
            with open(path, "rb") as f:
                if np.lib.format.read_magic(f) != (1, 0):
                    return None
                found, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                offset = f.tell()
        except (OSError, ValueError):
            return None
        row_bytes = 4 * int(np.prod(shape, dtype=np.int64))
        if found != (total, *shape) or fortran or dtype != np.dtype("<f4"):
            return None
        if path.stat().st_size != offset + total * row_bytes:
            return None
        return cls(path, os.open(path, os.O_RDWR), offset, row_bytes)

    def write(self, first_row: int, rows: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(rows, dtype="<f4").tobytes())  # one batch: a small copy
        at = self.offset + first_row * self.row_bytes
        try:
            while len(data):
                n = os.pwrite(self.fd, data, at)
                data, at = data[n:], at + n
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DeployError(
                    f"'{self.path}': the disk is full; free space and run the same command again (it continues)"
                ) from None
            raise

    def sync(self) -> None:
        """Rows written so far reach the disk (only the written pages: no whole-map msync)."""
        (getattr(os, "fdatasync", None) or os.fsync)(self.fd)

    def rows(self, count: int) -> np.ndarray:
        """The first ``count`` rows, memory-mapped read-only."""
        return np.load(self.path, mmap_mode="r", allow_pickle=False)[:count]

    def close(self) -> None:
        os.close(self.fd)


def _key(encoder: OnnxEncoder, images: Images) -> dict[str, Any]:
    """What must match for a re-run to continue: the encoder file and the exact inputs."""
    st = encoder.path.stat()
    return {
        "format": STATE_FORMAT,
        "model": str(encoder.path.resolve()),
        "model_bytes": st.st_size,
        "model_mtime_ns": st.st_mtime_ns,
        "inputs": images.fingerprint(),
        "count": len(images),
        "shape": list(encoder.info.output_shape),
    }


def _resume(rows_path: Path, state_path: Path, key: dict[str, Any]) -> tuple[RowFile, dict[str, Any]] | None:
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or damaged: start over
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        return None
    rows = RowFile.reopen(rows_path, key["count"], key["shape"])
    return None if rows is None else (rows, state)


@dataclass
class _Progress:
    """The run's state and where it is written; :meth:`save` flushes the rows before the record."""

    rows: RowFile
    state: dict[str, Any]  # key, next (images done), kept (rows written), skipped (indices)
    path: Path
    saved_at: float = 0.0  # time.monotonic() of the last record
    saved_next: int = -1  # the images it counted

    def save(self) -> None:
        if self.saved_next == self.state["next"]:
            return
        self.rows.sync()  # the rows reach the disk before the record that counts them
        atomic_write_text(self.path, json.dumps(self.state))
        self.saved_at, self.saved_next = time.monotonic(), self.state["next"]


def embed_to_disk(
    encoder: OnnxEncoder,
    images: Images,
    out: str | Path,
    *,
    batch_size: int = 256,
    workers: int | None = None,
    restart: bool = False,
    meta: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    sync_seconds: float = SYNC_SECONDS,
    hold_lock: bool = True,
) -> EmbedResult:
    """Embed ``images`` into the collection ``out`` (a ``.npy`` name), batch by batch (module docstring).

    ``restart`` ignores the progress of an earlier, unfinished run. ``progress(done, total)``
    is called after each batch (first with the images already done when resuming).
    ``sync_seconds``: how often rows are flushed and progress recorded (0: every batch).
    ``hold_lock=False`` when the caller already holds ``OutputLock(out, "embedding", folder=False)``.
    """
    out = Path(out)
    if out.suffix != ".npy":
        raise DeployError(f"-o '{out}': give a .npy file name, e.g. embeddings.npy")
    if len(images) == 0:
        raise DeployError(f"{images.description}: no images to embed")
    lock: contextlib.AbstractContextManager[Any] = (
        OutputLock(out, "embedding", folder=False) if hold_lock else contextlib.nullcontext()
    )
    with lock:
        run = _open_progress(encoder, images, out, restart)
        try:
            return _embed(encoder, images, out, run, batch_size, workers, meta, progress, sync_seconds)
        finally:
            run.rows.close()


def _open_progress(encoder: OnnxEncoder, images: Images, out: Path, restart: bool) -> _Progress:
    rows_path, state_path = partial_paths(out)
    key = _key(encoder, images)
    found = None if restart else _resume(rows_path, state_path, key)
    if found is not None:
        return _Progress(found[0], found[1], state_path)
    state_path.unlink(missing_ok=True)  # an old record must never count the rows of the new file
    rows = RowFile.create(rows_path, len(images), encoder.info.output_shape)
    return _Progress(rows, {"key": key, "next": 0, "kept": 0, "skipped": []}, state_path)


def _embed(
    encoder: OnnxEncoder,
    images: Images,
    out: Path,
    run: _Progress,
    batch_size: int,
    workers: int | None,
    meta: dict[str, Any] | None,
    progress: Callable[[int, int], None] | None,
    sync_seconds: float,
) -> EmbedResult:
    total, state, info = len(images), run.state, encoder.info
    resumed_at = run.saved_next = state["next"]
    if progress is not None:
        progress(resumed_at, total)
    t0 = run.saved_at = time.monotonic()
    try:
        for chunk, arrays in decoded_batches(
            lambda i: images.decode(i, info.input_shape), total, batch_size, workers, start=resumed_at
        ):
            good = [a for a in arrays if a is not None]
            if good:
                run.rows.write(state["kept"], encoder(normalize(np.stack(good), info.mean, info.std)))
            state["kept"] += len(good)
            state["skipped"] += [i for i, a in zip(chunk, arrays, strict=True) if a is None]
            state["next"] = chunk.stop
            if time.monotonic() - run.saved_at >= sync_seconds:
                run.save()
            if progress is not None:
                progress(chunk.stop, total)
    finally:  # also on an error or Ctrl-C: what was written is recorded, and a re-run continues from there
        run.save()
    seconds = time.monotonic() - t0
    return _finish(encoder, images, out, run, meta, resumed_at, seconds)


def _finish(
    encoder: OnnxEncoder,
    images: Images,
    out: Path,
    run: _Progress,
    meta: dict[str, Any] | None,
    resumed_at: int,
    seconds: float,
) -> EmbedResult:
    total, state, info = len(images), run.state, encoder.info
    skipped = set(state["skipped"])
    if state["kept"] == 0:
        raise DeployError(f"none of the {total} images could be read; nothing written (see the image files)")
    files = [images.path(i) for i in range(total) if i not in skipped]
    meta = {
        **(meta or {}),
        "provider": encoder.provider,
        "layer": info.layer,
        "pool": info.pool,
        "backbone": info.backbone,
        "task": info.task,
        "images_per_s": (total - resumed_at) / max(seconds, 1e-9),
        "resumed_at": resumed_at,
        "source": images.description,
        "skipped": [str(images.path(i)) for i in sorted(skipped)],
    }
    rows = run.rows.rows(state["kept"])
    paths = save_collection(out, rows, files, meta)
    del rows  # close the read-only map before removing its file
    run.rows.path.unlink(missing_ok=True)
    run.path.unlink(missing_ok=True)
    return EmbedResult(paths, len(files), total, meta["skipped"], resumed_at, seconds)
