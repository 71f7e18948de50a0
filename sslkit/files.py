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
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import ConfigError, DataError, SSLKitError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def data_root() -> Path:
    """``$SSLKIT_DATA``, else ``$XDG_CACHE_HOME/sslkit`` (default ``~/.cache/sslkit``): decoded
    folders, packed caches, downloads and the shell completion's name list live here."""
    env = os.environ.get("SSLKIT_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "sslkit"


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def name_problem(name: str) -> str | None:
    """Why a file name cannot travel through sslkit's outputs (None: it can).

    Names that are not valid UTF-8 reach Python as lone surrogates, which no UTF-8 text (a cache
    key, a pack index, ``embed``'s ``.files.txt``) can hold; control characters (a newline, a tab,
    Unicode line separators) would split the one-name-per-line files in two.
    """
    if name.isprintable():  # the common case, one C loop
        return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return NOT_UTF8
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return CONTROL
    return None  # other non-printable characters (a no-break space, a zero-width joiner) are fine


NOT_UTF8 = "are not valid UTF-8"
CONTROL = "hold control characters (a newline, a tab...)"


def _shown(path: str) -> str:
    """A name as a person can read it in one line: the raw bytes of a non-UTF-8 name, escapes for control characters."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(path))
    return repr(path)


@dataclass
class ImageListing:
    """The image files found, sorted, and those skipped for their names (reason -> paths)."""

    files: list[Path] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.setdefault(reason, []).append(path)

    def warn(self, where: str | Path) -> None:
        """One warning line per reason: how many, the first few, and the fix."""
        for reason, paths in self.skipped.items():
            shown = ", ".join(_shown(p) for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            log.warning(
                "skipped %d image file(s) or folder(s) in %s whose names %s (%s); rename them to use them",
                len(paths),
                _shown(str(where)),
                reason,
                shown,
            )


def _check_root(root: Path) -> None:
    problem = name_problem(str(root))
    if problem is not None:
        raise DataError(
            f"folder {_shown(str(root))}: its path has names that {problem}; rename it or give another folder"
        )


def scan_images(root: str | Path) -> ImageListing:
    """Image files under the folder ``root``, sorted, without warning (see :func:`walk_images`)."""
    root = Path(root)
    _check_root(root)
    listing = ImageListing()
    seen: set[str] = set()  # real paths of the folders walked: each is walked once
    links: deque[Path] = deque()  # folders reached through a link: walked after every real folder
    _scan_tree(root, seen, links, listing)
    while links:
        _scan_tree(links.popleft(), seen, links, listing)
    listing.files.sort()
    return listing


def _scan_tree(top: Path, seen: set[str], links: deque[Path], listing: ImageListing) -> None:
    """Walk ``top``'s folders without following links: image files are listed, linked folders queued."""
    stack = [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:  # an unreadable folder is left out, as os.walk leaves it
            continue
        for entry in entries:
            path = folder / entry.name
            is_dir = entry.is_dir()  # follows a link (a dangling link is neither folder nor file)
            if not is_dir and not is_image_name(entry.name):
                continue
            problem = name_problem(entry.name)
            if problem is not None:
                listing.skip(str(path), problem)
            elif is_dir:
                (links.append if entry.is_symlink() else stack.append)(path)
            elif entry.is_file():  # a regular file, or a link to one: never a FIFO, socket or device
                listing.files.append(path)


def walk_images(root: str | Path) -> list[Path]:
    """Image files under the folder ``root``, sorted; hidden files skipped.

    Only regular files (or links to them) are listed: a FIFO named ``x.jpg`` would block its
    reader forever. Names that are not valid UTF-8 or hold control characters are skipped with
    one warning (see :func:`name_problem`). Folders reached through a symlink are walked after
    every real folder and at most once, so a real folder keeps its own files (and its label)
    even when a link elsewhere points at it, no file is listed twice and a link loop
    (``loop -> ..``) cannot hang the walk.
    """
    listing = scan_images(root)
    listing.warn(root)
    return listing.files


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among ``paths`` (files kept as given, folders walked by :func:`walk_images`).

    Raises ``FileNotFoundError`` for a path that does not exist and ``LookupError`` for a folder
    without images or a path that is not a regular file (a FIFO, a device); callers turn them
    into their own one-line errors. Files with names :func:`name_problem` rejects are skipped
    with one warning, as in folders.
    """
    files: list[Path] = []
    given = ImageListing()
    for p in map(Path, paths):
        if p.is_dir():
            found = walk_images(p)
            if not found:
                raise LookupError(f"no images in folder '{p}' (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif p.is_file():
            problem = name_problem(str(p))
            if problem is None:
                files.append(p)
            else:
                given.skip(str(p), problem)
        elif p.exists():
            raise LookupError(f"'{p}' is not a regular file (a FIFO, socket or device); give image files or folders")
        else:
            raise FileNotFoundError(f"no such image file or folder: '{p}'")
    given.warn("the files given")
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
