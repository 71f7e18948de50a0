"""Ways to damage a packed store on disk, for fault-injection tests (importable by any test file:
``from store_damage import DAMAGES, damage``).

Each helper changes the store the way a user, a disk or a copy could, leaving ``manifest.json``
as it was: the readers must notice from what they read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Index columns (sslkit.data.store.format): shard, offset, size, label, height, width, checksum.
SHARD, OFFSET, SIZE, LABEL = 0, 1, 2, 3


def _manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def _index(store: Path) -> np.ndarray:
    return np.load(store / "index.npy", allow_pickle=False)


def flip_sample_bytes(store: Path, sample: int = 5, count: int = 600) -> str:
    """XOR ``count`` bytes (at most the sample's last half) inside one sample's payload, size unchanged."""
    row = _index(store)[sample]
    shard = store / _manifest(store)["shards"][int(row[SHARD])]["name"]
    size = int(row[SIZE])
    count = min(count, size // 2)
    start = int(row[OFFSET]) + size - count  # the end of the payload: pixels of a raw sample, not its header
    data = bytearray(shard.read_bytes())
    for k in range(start, start + count):
        data[k] ^= 0x5A
    shard.write_bytes(bytes(data))
    return shard.name


def edit_index(store: Path, sample: int = 5, flip_labels: int = 10) -> str:
    """Point ``sample`` at the next sample's bytes and flip ``flip_labels`` labels; same shape, same dtype."""
    index = _index(store)
    index[sample, :3] = index[sample + 1, :3]
    if index.shape[1] > 6:
        index[sample, 6] = index[sample + 1, 6]  # its checksum too: only the index hash can tell
    labels = index[:flip_labels, LABEL]
    index[:flip_labels, LABEL] = np.where(labels >= 0, 1 - labels, labels)
    with open(store / "index.npy", "wb") as f:
        np.save(f, index)
    return "index.npy"


def delete_shard(store: Path, shard: int = 0) -> str:
    name = _manifest(store)["shards"][shard]["name"]
    (store / name).unlink()
    return name


def truncate_shard(store: Path, shard: int = 0) -> str:
    path = store / _manifest(store)["shards"][shard]["name"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path.name


DAMAGES: dict[str, Callable[[Path], str]] = {
    "flipped bytes": flip_sample_bytes,
    "edited index": edit_index,
    "deleted shard": delete_shard,
    "truncated shard": truncate_shard,
}


def damage(store: Path, kind: str) -> str:
    """Apply the damage ``kind`` (a key of DAMAGES); returns the name of the file it changed."""
    return DAMAGES[kind](Path(store))
