"""Embedded image collections on disk, cosine nearest neighbours and their picture (numpy + Pillow).

A collection written by ``sslkit embed -o emb.npy`` is three files: ``emb.npy`` (embeddings
[N, ...] float32), ``emb.files.txt`` (one image path per line, relative to ``root``, in the order
of the rows; a path that holds a line break or another control character, or starts with a
double quote, is written as a JSON string, so the file always has one line per row) and
``emb.json`` (root, encoder file, provider, shape, skipped images). Each is written through
:func:`sslkit.files.atomic_write`: a kill never leaves half a file under the final name.

The neighbour grid is the figure of Doersch, Gupta, Efros, "Unsupervised Visual Representation
Learning by Context Prediction", ICCV 2015 (fig. 4): each query, then its nearest neighbours.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from .errors import DeployError
from .files import atomic_write

log = logging.getLogger(__name__)


@dataclass
class Collection:
    embeddings: np.ndarray  # [N, ...]
    files: list[Path]  # absolute paths, one per row
    meta: dict[str, Any] = field(default_factory=dict)

    def vectors(self) -> np.ndarray:
        """[N, D]: feature maps flattened, one vector per image."""
        return self.embeddings.reshape(len(self.embeddings), -1)


def sidecars(path: Path) -> tuple[Path, Path]:
    """(file index, json) written next to ``path`` (``emb.npy`` -> ``emb.files.txt``, ``emb.json``)."""
    stem = path.with_suffix("") if path.suffix == ".npy" else path
    return stem.with_name(stem.name + ".files.txt"), stem.with_name(stem.name + ".json")


_NEEDS_QUOTING = re.compile(r'[\x00-\x1f\x7f]|^"')


def index_line(name: str) -> str:
    """One line of the file index: the name as is, or as a JSON string when a plain line could
    not hold it (a line break or other control character) or would read as one (a leading quote)."""
    return json.dumps(name) if _NEEDS_QUOTING.search(name) else name


def parse_index_line(line: str) -> str:
    """The inverse of :func:`index_line`."""
    return json.loads(line) if line.startswith('"') else line


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a temporary name
        np.save(f, array)


def save_collection(
    path: str | Path, embeddings: np.ndarray, files: Sequence[Path], meta: dict[str, Any]
) -> tuple[Path, Path, Path]:
    """Write the three files of a collection; file paths are stored relative to their common root."""
    path = Path(path)
    if path.suffix != ".npy":
        raise DeployError(f"-o '{path}': give a .npy file name, e.g. embeddings.npy")
    absolute = [Path(f).resolve() for f in files]
    root = Path(os.path.commonpath([str(f.parent) for f in absolute])) if absolute else Path.cwd()
    index, info = sidecars(path)
    atomic_write(path, lambda tmp: _save_npy(tmp, embeddings))
    lines = "".join(index_line(p.relative_to(root).as_posix()) + "\n" for p in absolute)
    atomic_write(index, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
    meta = {
        **meta,
        "root": str(root),
        "count": int(len(embeddings)),
        "shape": list(embeddings.shape[1:]),
        "index": index.name,
    }
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(info, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path, index, info


def load_collection(path: str | Path) -> Collection:
    path = Path(path)
    index, info = sidecars(path)
    for p in (path, index, info):
        if not p.is_file():
            raise DeployError(
                f"no '{p}': give the .npy written by 'sslkit embed' (with its .files.txt and .json beside it)"
            )
    try:
        embeddings = np.load(path, allow_pickle=False)
        meta = json.loads(info.read_text())
    except (ValueError, OSError) as exc:
        raise DeployError(f"cannot read collection '{path}' ({type(exc).__name__}); embed the images again") from None
    root = Path(meta.get("root", "."))
    try:
        names = [parse_index_line(line) for line in index.read_text(encoding="utf-8").split("\n") if line]
    except (ValueError, UnicodeDecodeError):
        names = None
    if names is None or len(names) != len(embeddings):
        count = "unreadable names" if names is None else f"{len(names)} file names"
        raise DeployError(
            f"'{index}' lists {count} for {len(embeddings)} embeddings (written by an older sslkit that "
            f"split names with line breaks, or edited since); write it again: sslkit embed MODEL IMAGES "
            f"-o {path} --restart"
        )
    return Collection(embeddings, [root / name for name in names], meta)


def cosine_neighbors(
    collection: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude: Sequence[int | None] | None = None,
    center: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices [Q, k] and cosine similarities [Q, k] of each query's ``k`` nearest rows, best
    first; ``exclude[q]`` (the query's own row, when it is in the collection) is never returned.

    ``center`` subtracts the collection's mean vector first: features after a ReLU are all
    non-negative and share one dominant direction, so raw cosines crowd near 1.
    """
    collection = collection.reshape(len(collection), -1).astype(np.float32)
    queries = queries.reshape(len(queries), -1).astype(np.float32)
    if center:
        mean = collection.mean(axis=0, keepdims=True)
        collection, queries = collection - mean, queries - mean

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(queries) @ unit(collection).T  # [Q, N]
    if exclude is not None:
        for q, row in enumerate(exclude):
            if row is not None:
                sims[q, row] = -np.inf
    excluded = 1 if exclude is not None and any(e is not None for e in exclude) else 0
    k = max(0, min(k, sims.shape[1] - excluded))
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # Q x N log N: fine for a few queries
    return idx, np.take_along_axis(sims, idx, 1)


def neighbor_grid(
    queries: Sequence[Path], neighbors: Sequence[Sequence[Path]], sims: np.ndarray, tile: int = 64
) -> Image.Image:
    """One row per query: the query (framed), a gap, then its neighbours captioned with similarity."""
    pad, caption, gap = 4, 14, 12
    cols = max((len(n) for n in neighbors), default=0)
    width = pad + (tile + pad) * (cols + 1) + gap
    height = pad + (tile + caption + pad) * len(queries)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    unreadable: set[Path] = set()

    def put(path: Path, x: int, y: int) -> None:
        try:
            with Image.open(path) as im:
                canvas.paste(ImageOps.fit(im.convert("RGB"), (tile, tile), Image.Resampling.BICUBIC), (x, y))
        except Exception:  # a file gone or broken since embedding (PIL raises several types): grey
            draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(200, 200, 200))
            unreadable.add(path)

    for r, (q, row) in enumerate(zip(queries, neighbors, strict=True)):
        y = pad + r * (tile + caption + pad)
        put(q, pad, y)
        draw.rectangle([pad - 2, y - 2, pad + tile + 1, y + tile + 1], outline=(220, 30, 30), width=2)
        draw.text((pad, y + tile + 1), "query", fill=(220, 30, 30))
        for c, path in enumerate(row):
            x = pad + (tile + pad) * (c + 1) + gap
            put(path, x, y)
            draw.text((x, y + tile + 1), f"{float(sims[r, c]):.3f}", fill=(0, 0, 0))
    if unreadable:
        shown = len(set(queries) | {p for row in neighbors for p in row})
        first = sorted(unreadable)[0]
        log.warning(
            "%d of the %d images in the grid could not be read (e.g. '%s': moved or deleted since "
            "embedding) and are drawn as grey tiles; embed the images again",
            len(unreadable),
            shown,
            first,
        )
    return canvas
