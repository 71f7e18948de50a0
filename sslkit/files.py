"""Files on disk: the one image lister and the one atomic writer (no torch: ``sslkit.deploy`` uses both).

Every command that walks a folder of images (training, packing, embedding) lists it with
:func:`list_images`, and every file sslkit writes goes through :func:`atomic_write`, so a kill,
a full disk or two processes writing at once never leave half a file under the final name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def walk_images(root: str | Path) -> list[Path]:
    """Image files under the folder ``root``, sorted; hidden files skipped.

    Symlinked folders are followed once: a folder reached again through another link (a link
    back up the tree, ``loop -> ..``) is not walked again, so no file is listed twice and a
    symlink loop cannot hang the walk.
    """
    files: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, names in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        files += [Path(dirpath) / f for f in names if is_image_name(f)]
    return sorted(files)


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among ``paths`` (files kept as given, folders walked by :func:`walk_images`).

    Raises ``FileNotFoundError`` for a path that does not exist and ``LookupError`` for a folder
    without images; callers turn them into their own one-line errors.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = walk_images(p)
            if not found:
                raise LookupError(f"no images in folder '{p}' (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such image file or folder: '{p}'")
    return files


def temporary_name(path: Path) -> Path:
    """A hidden sibling name unique to this call (pid + random): concurrent writers never share it."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a unique temporary file, then rename it over ``path``.

    A kill or an error (a full disk) leaves the previous ``path`` untouched and no temporary
    file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
