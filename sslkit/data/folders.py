"""A folder of images decoded once into RAM (:class:`ImageData`), cached on disk.

Class sub-folders become labels when every image sits in one (``lab/cat/1.jpg``, ``lab/dog/2.jpg``),
as :mod:`sslkit.data.store.sources` labels a packed folder. The files are those of
:func:`sslkit.files.walk_images`; each is decoded by :func:`sslkit.images.decode_image`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..files import IMAGE_SUFFIXES, atomic_write, walk_images
from ..images import decode_image, header_size
from .datasets import ImageData, data_root

log = logging.getLogger(__name__)

CACHE_VERSION = 1
HEADER_SAMPLE = 64  # image headers read to guess whether a folder holds one size


def _decode(path: Path, size: int | None) -> np.ndarray | None:
    """uint8 [3, size, size] (or the image's own size), None when unreadable."""
    return decode_image(path, None if size is None else (size, size))


def _one_size(
    root: Path, kept: list[tuple[str, np.ndarray]], files: list[Path], rel: list[str]
) -> list[tuple[str, np.ndarray]]:
    """Images of several sizes, no data.image_size: the most common size when it is square, the
    others resized and centre-cropped to it (one warning says so); else a one-line error."""
    shapes = Counter(a.shape for _, a in kept)
    if len(shapes) == 1:
        return kept
    common = shapes.most_common(1)[0][0]
    if common[1] != common[2]:
        raise DataError(
            f"--data '{root}': images have {len(shapes)} different sizes (most common "
            f"{common[2]}x{common[1]}, not square); resize them with --set data.image_size={min(common[1:])}"
        )
    size = common[1]
    log.warning(
        "--data '%s': images have %d different sizes; training at %dx%d, the most common (the others "
        "resized and centre-cropped); set data.image_size to choose",
        root,
        len(shapes),
        size,
        size,
    )
    path_of = dict(zip(rel, files, strict=True))
    resized = [(r, a if a.shape == common else _decode(path_of[r], size)) for r, a in kept]
    return [(r, a) for r, a in resized if a is not None]


def _cache_path(root: Path, files: list[Path], rel: list[str], image_size: int | None, cache_dir: Path | None) -> Path:
    """Where the decoded folder is cached: a hash of the listing (names, sizes, mtimes) and the size."""
    key = hashlib.sha1(f"v{CACHE_VERSION}|{root}|{image_size}".encode())
    for f, r in zip(files, rel, strict=True):
        try:
            st = f.stat()
            key.update(f"|{r}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:  # removed since the listing: it is skipped as unreadable when decoded
            key.update(f"|{r}|?".encode())
    return (cache_dir or data_root() / "folders") / f"{root.name}-{key.hexdigest()[:16]}.pt"


def _read_cache(cache: Path, root: Path) -> ImageData | None:
    if not cache.is_file():
        return None
    try:
        blob = torch.load(cache, weights_only=True)
        return ImageData(
            blob["images"], blob["labels"], list(blob["classes"]), f"folder '{root}'", files=list(blob["files"])
        )
    except Exception:  # a corrupt cache is rebuilt, never fatal
        log.warning("ignoring unreadable cache %s; decoding the folder again", cache)
        return None


def load_folder(
    root: Path, image_size: int | None = None, cache_dir: Path | None = None, files: list[Path] | None = None
) -> ImageData:
    """Decode every image under ``root`` once (cached under ``data_root()/folders``).

    Images must share one size unless ``image_size`` is given (then each is resized and
    centre-cropped to it). Unreadable files are skipped with one warning naming them. ``files``:
    the folder's listing when the caller already has it (``walk_images(root)``).
    """
    root = root.resolve()
    files = walk_images(root) if files is None else files
    if not files:
        raise DataError(
            f"--data '{root}': no images found (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "point --data at a folder of image files"
        )
    rel = [f.relative_to(root).as_posix() for f in files]
    parents = {Path(r).parent.as_posix() for r in rel}
    labelled = "." not in parents and all("/" not in p for p in parents)
    classes = sorted(parents) if labelled else []
    cache = _cache_path(root, files, rel, image_size, cache_dir)
    cached = _read_cache(cache, root)
    if cached is not None:
        return cached

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        arrays = list(pool.map(lambda f: _decode(f, image_size), files, chunksize=64))
    bad = [r for r, a in zip(rel, arrays, strict=True) if a is None]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        log.warning("skipped %d unreadable image(s) in %s: %s", len(bad), root, shown)
    kept = [(r, a) for r, a in zip(rel, arrays, strict=True) if a is not None]
    if not kept:
        raise DataError(f"--data '{root}': none of the {len(files)} image files could be read")
    kept = _one_size(root, kept, files, rel)
    images = torch.from_numpy(np.stack([a for _, a in kept]))
    labels = None
    if labelled:
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[Path(r).parent.as_posix()] for r, _ in kept], dtype=torch.int64)
    data = ImageData(images, labels, classes, f"folder '{root}'", files=[r for r, _ in kept])
    try:
        blob = {"images": images, "labels": labels, "classes": classes, "files": data.files}
        atomic_write(cache, lambda tmp: torch.save(blob, tmp))  # unique temporary name per writer
    except OSError as exc:  # a read-only cache only costs decoding time
        log.warning("could not cache decoded images at %s: %s", cache, exc)
    return data


def folder_fits(files: list[Path], image_size: int | None, budget_bytes: float) -> bool:
    """Whether a folder's images, decoded, share one size and fit ``budget_bytes`` (from a sample
    of headers, nothing decoded)."""
    if not files:
        return True  # load_folder says "no images" in one line
    if image_size is not None:
        return len(files) * 3 * image_size**2 <= budget_bytes
    step = max(1, len(files) // HEADER_SAMPLE)
    sizes = {size for size in map(header_size, files[::step][:HEADER_SAMPLE]) if size is not None}
    if len(sizes) != 1:
        return False
    w, h = sizes.pop()
    return len(files) * 3 * w * h <= budget_bytes
