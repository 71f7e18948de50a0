"""Packed image stores: WebDataset tar shards plus an index, for collections too big or too mixed for memory.

``pack(source, out)`` writes one, ``Store.open(out)`` reads it, ``verify(out)`` checks it,
``cached_store(folder)`` packs a folder once into the data cache. Imported lazily, so packing
workers (which need only numpy and PIL) never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "pack": "sslkit.data.store.packer",
    "Store": "sslkit.data.store.reader",
    "verify": "sslkit.data.store.verifier",
    "cached_store": "sslkit.data.store.cache",
    "FORMAT": "sslkit.data.store.format",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sslkit.data.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
