"""Checking a store against its manifest: every shard's and index file's sha256 and size."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from . import format as fmt


def verify(path: str | Path, on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The manifest when every file matches it; else a one-line DataError naming the first bad file."""
    path = Path(path).expanduser()
    manifest = fmt.read_manifest(path)
    fix = f"re-pack it with 'sslkit data pack' (or restore {path} from a good copy)"
    names = [(n, digest, None) for n, digest in manifest["meta"].items()]
    names += [(s["name"], s["sha256"], s["bytes"]) for s in manifest["shards"]]
    for done, (name, digest, size) in enumerate(names, 1):
        file = path / name
        if not file.is_file():
            raise DataError(f"store '{path}': {name} is missing; {fix}")
        if size is not None and file.stat().st_size != size:
            raise DataError(
                f"store '{path}': {name} has {file.stat().st_size} bytes, the manifest says {size} (truncated "
                f"or changed); {fix}"
            )
        if fmt.sha256_file(file) != digest:
            raise DataError(f"store '{path}': {name} fails its sha256 check (corrupt or changed); {fix}")
        if on_progress is not None:
            on_progress(done, len(names))
    index = np.load(path / fmt.INDEX, allow_pickle=False)
    ends = index[:, fmt.OFFSET] + index[:, fmt.SIZE]
    limits = np.array([s["bytes"] for s in manifest["shards"]])[index[:, fmt.SHARD]]
    if len(index) != manifest["images"] or (ends > limits).any():
        raise DataError(f"store '{path}': {fmt.INDEX} points outside its shards; {fix}")
    return manifest
