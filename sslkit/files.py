"""Files on disk: the one image lister, the one atomic writer and the one output lock (no torch:
``sslkit.deploy`` uses them).

Every command that walks a folder of images (training, packing, embedding) lists it with
:func:`list_images`, every file sslkit writes goes through :func:`atomic_write`, so a kill, a full
disk or two processes writing at once never leave half a file under the final name, and every
command that writes an output holds its :class:`OutputLock` while it does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import ConfigError, SSLKitError

log = logging.getLogger(__name__)

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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a unique temporary file, then rename it over ``path``.

    A kill or an error (a full disk) leaves the previous ``path`` untouched and no temporary
    file behind. The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask):
    writers that create private temporary files (safetensors, tempfile) do not leak 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        write(tmp)
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class OutputBusyError(SSLKitError):
    """Another sslkit process holds the output's lock."""


class OutputLock:
    """``with OutputLock(out, "run"):`` one sslkit writer at a time for an output, a folder or a file.

    The lock is an fcntl lock on a hidden file holding the holder's PID: ``out/.lock`` for a
    folder, ``.NAME.lock`` beside a file. It dies with its process (a SIGKILL never leaves a
    stale lock), and the file is removed when the holder is done, so finished outputs carry no
    lock file. ``wait=True`` waits for the holder instead of failing (two packers of one cache).
    """

    def __init__(self, out: str | Path, what: str, *, folder: bool = True, wait: bool = False) -> None:
        self.out = Path(out)
        self.what = what
        self.folder = folder
        self.wait = wait
        self.path = self.out / ".lock" if folder else self.out.with_name(f".{self.out.name}.lock")
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        self._make_parent()
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one writer is the user's to ensure
            return self
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if not self.wait:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise OutputBusyError(
                        f"'{self.out}' is in use by another sslkit {self.what} (PID {holder}); "
                        "wait for it to finish or choose another output"
                    ) from None
                log.warning("another sslkit process is writing '%s'; waiting for it to finish", self.out)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if self._still_linked(fd):
                break
            os.close(fd)  # the holder removed the file as we waited for it: lock the new one
            time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # unlinked while still held: a waiter that got this inode sees it
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None

    def _make_parent(self) -> None:
        where = self.out if self.folder else self.out.parent
        if self.folder and self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"'{self.out}' is a file, not a folder; choose a folder for the {self.what}")
        try:
            where.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise ConfigError(f"'{where}': no permission to write there; choose a writable folder") from None
        except FileExistsError:
            raise ConfigError(f"'{where}' is a file, not a folder; choose another output") from None
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise ConfigError(f"'{where}' is on a read-only file system; choose a writable folder") from None
            raise

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise ConfigError(f"'{self.path.parent}': no permission to write there; choose a writable folder") from None
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise ConfigError(
                    f"'{self.path.parent}' is on a read-only file system; choose a writable folder"
                ) from None
            raise

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, atomically (the whole file rewritten: it always matches its source)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
