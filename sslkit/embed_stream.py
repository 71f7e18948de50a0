"""Embed a large image collection straight to disk: bounded memory, resumable (no torch for folders).

``sslkit embed`` on a million images must not hold a million rows in memory, and a run killed
after an hour must not start again from zero. :func:`embed_to_disk` therefore writes each
batch's rows into a memory-mapped ``OUT.partial.npy`` (rows of readable images packed from the
top), then records how far it got in ``OUT.progress.json`` (atomically, after the rows are
flushed). A re-run with the same encoder file and the same inputs continues after the last
recorded batch; anything else starts over. At the end the collection is written in the format
of :mod:`sslkit.retrieval` (``OUT.npy``, ``OUT.files.txt``, ``OUT.json``) and the partial files
are removed.

Inputs are image files and folders (:func:`sslkit.deploy.list_images`) or one packed sslkit store
(a folder with ``manifest.json``, see :mod:`sslkit.data.store`; reading a store needs torch).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .deploy import OnnxEncoder, decode, decoded_batches, fit, list_images, normalize
from .errors import DeployError
from .files import atomic_write_text
from .retrieval import save_collection

STATE_FORMAT = "sslkit.embed-progress/1"
STORE_MANIFEST = "manifest.json"  # what marks a folder as a packed store (sslkit.data.store.format.MANIFEST)


class Images(Protocol):
    """What :func:`embed_to_disk` reads: ``len`` images, each with a name and a path for the index."""

    description: str

    def __len__(self) -> int: ...
    def names(self) -> list[str]: ...
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

    def path(self, i: int) -> Path:
        return Path(self.store.path) / self.store.files[i]

    def decode(self, i: int, shape: Sequence[int]) -> np.ndarray | None:
        image = self.store.read(i).numpy()  # uint8 [3, H, W]; a damaged shard raises DataError
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


def _key(encoder: OnnxEncoder, images: Images) -> dict[str, Any]:
    """What must match for a re-run to continue: the encoder file and the exact input list."""
    st = encoder.path.stat()
    names = hashlib.sha256("\n".join(images.names()).encode()).hexdigest()
    return {
        "format": STATE_FORMAT,
        "model": str(encoder.path.resolve()),
        "model_bytes": st.st_size,
        "model_mtime_ns": st.st_mtime_ns,
        "inputs": names,
        "count": len(images),
        "shape": list(encoder.info.output_shape),
    }


def _resume(rows_path: Path, state_path: Path, key: dict[str, Any]) -> tuple[np.memmap, dict[str, Any]] | None:
    try:
        state = json.loads(state_path.read_text())
        if state.get("key") != key:
            return None
        rows = np.lib.format.open_memmap(rows_path, mode="r+")
    except (OSError, ValueError):  # missing or damaged: start over
        return None
    if rows.shape != (key["count"], *key["shape"]) or rows.dtype != np.float32:
        return None
    return rows, state


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
) -> EmbedResult:
    """Embed ``images`` into the collection ``out`` (a ``.npy`` name), batch by batch (module docstring).

    ``restart`` ignores the progress of an earlier, unfinished run. ``progress(done, total)``
    is called after each batch (first with the images already done when resuming).
    """
    out = Path(out)
    if out.suffix != ".npy":
        raise DeployError(f"-o '{out}': give a .npy file name, e.g. embeddings.npy")
    total = len(images)
    if total == 0:
        raise DeployError(f"{images.description}: no images to embed")
    rows_path, state_path = partial_paths(out)
    key = _key(encoder, images)
    found = None if restart else _resume(rows_path, state_path, key)
    if found is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = np.lib.format.open_memmap(
            rows_path, mode="w+", dtype=np.float32, shape=(total, *encoder.info.output_shape)
        )
        state: dict[str, Any] = {"key": key, "next": 0, "kept": 0, "skipped": []}
    else:
        rows, state = found
    resumed_at = state["next"]
    if progress is not None:
        progress(resumed_at, total)
    shape, info = encoder.info.input_shape, encoder.info
    t0 = time.perf_counter()
    for chunk, arrays in decoded_batches(
        lambda i: images.decode(i, shape), total, batch_size, workers, start=resumed_at
    ):
        good = [a for a in arrays if a is not None]
        if good:
            kept = state["kept"]
            rows[kept : kept + len(good)] = encoder(normalize(np.stack(good), info.mean, info.std))
            rows.flush()  # the rows reach the file before the record that counts them
        state["kept"] += len(good)
        state["skipped"] += [i for i, a in zip(chunk, arrays, strict=True) if a is None]
        state["next"] = chunk.stop
        atomic_write_text(state_path, json.dumps(state))
        if progress is not None:
            progress(chunk.stop, total)
    seconds = time.perf_counter() - t0
    skipped = set(state["skipped"])
    if state["kept"] == 0:
        raise DeployError(f"none of the {total} images could be read; nothing written (see the image files)")
    files = [images.path(i) for i in range(total) if i not in skipped]
    done_now = total - resumed_at
    meta = {
        **(meta or {}),
        "provider": encoder.provider,
        "layer": info.layer,
        "pool": info.pool,
        "backbone": info.backbone,
        "task": info.task,
        "images_per_s": done_now / max(seconds, 1e-9),
        "resumed_at": resumed_at,
        "source": images.description,
        "skipped": [str(images.path(i)) for i in sorted(skipped)],
    }
    paths = save_collection(out, rows[: state["kept"]], files, meta)
    del rows  # close the memory map before removing its file
    for p in (rows_path, state_path):
        p.unlink(missing_ok=True)
    return EmbedResult(paths, len(files), total, meta["skipped"], resumed_at, seconds)
