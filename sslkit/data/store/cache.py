"""A folder packed once into the data cache and reused (several ranks on one machine share it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .format import MANIFEST
from .packer import DEFAULT_SHARD_SIZE, Encoding, pack
from .reader import Store
from .sources import Source, folder_source

STORE_VERSION = 2  # 2: stores of format 2 (per-sample checksums); a cached format-1 store is packed again
Progress = Callable[[int, int], None]


def cached_source_store(
    src: Source,
    on_progress: Progress | None = None,
    *,
    encoding: Encoding = "auto",
    max_side: int | None = None,
    quality: int = 90,
    workers: int | None = None,
    name: str | None = None,
) -> Store:
    """``src`` packed into ``data_root()/stores/<name>-<key>`` on first use, then reused."""
    from ..datasets import data_root

    options = {"v": STORE_VERSION, "encoding": encoding, "max_side": max_side, "quality": quality}
    out = data_root() / "stores" / f"{name or Path(src.where).name}-{src.key(options)[:16]}"
    if not (out / MANIFEST).is_file():  # else pack() waits on the lock, resumes or returns the finished one
        pack(
            src,
            out,
            encoding=encoding,
            max_side=max_side,
            quality=quality,
            shard_size=DEFAULT_SHARD_SIZE,
            workers=workers,
            on_progress=on_progress,
        )
    return Store.open(out)


def cached_store(
    folder: Path,
    on_progress: Progress | None = None,
    *,
    encoding: Encoding = "auto",
    max_side: int | None = None,
    quality: int = 90,
    workers: int | None = None,
) -> Store:
    """``folder`` packed once into the data cache (labels from class sub-folders, as ``load_folder``).

    The cache key covers the listing (relative names, sizes, mtimes) and the options, so a
    changed folder gets a new store. Concurrent callers (torchrun ranks on one machine) wait on
    the pack lock for one packer, then all open its result.
    """
    return cached_source_store(
        folder_source(Path(folder)), on_progress, encoding=encoding, max_side=max_side, quality=quality, workers=workers
    )
