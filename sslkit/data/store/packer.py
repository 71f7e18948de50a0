"""Packing images into a store: worker processes decode, one writer streams tar shards.

Memory stays bounded by the window of chunks in flight, never by the number of images: each
chunk's payloads go straight into the open shard. A shard is written under a temporary name and
renamed when complete; ``.pack-state.json`` then records it, so a killed pack re-run with the
same source and options continues after the last complete shard. The folder's
:class:`sslkit.files.OutputLock` (``wait=True``) makes a second packer of the same folder wait for
the first; it removes its file when done, so a finished store holds no lock file. Worker
processes die with the packer, even when it is killed with SIGKILL (:func:`_worker_init`).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ...errors import ConfigError, DataError
from ...files import OutputLock, atomic_write, atomic_write_text, temporary_name
from . import format as fmt
from .encode import Encoded, Skipped, cap_array, encode_array, encode_files, probe_max_side
from .sources import Source, resolve_source

if TYPE_CHECKING:
    from ...plugins import Plugins

log = logging.getLogger(__name__)

Encoding = Literal["auto", "raw", "jpeg"]
ENCODINGS = ("auto", "raw", "jpeg")
AUTO_RAW_MAX_SIDE = 64  # up to 64 px a raw sample is <= 12 KB: JPEG would save little and cost decode time
DEFAULT_SHARD_SIZE = 256 << 20  # WebDataset's advice: shards of 100 MB - 1 GB
CHUNK = 64  # images per task sent to a worker


@dataclass
class _Shard:
    """What one finished shard holds (kept in .pack/ until the manifest is written)."""

    rows: list[list[int]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    sums: list[int] = field(default_factory=lambda: [0] * 7)  # 3 sums, 3 sums of squares, pixels
    consumed: int = 0  # source images read up to the end of this shard


def shard_bytes(megabytes: float) -> int:
    """``--shard-size`` in MB as bytes, or a one-line ConfigError for nan, inf, zero or a negative size."""
    if not math.isfinite(megabytes) or megabytes <= 0:
        raise ConfigError(f"--shard-size {megabytes}: give a positive number of MB (e.g. 256)")
    return int(megabytes * 2**20)


def _check_options(encoding: str, max_side: int | None, quality: int, shard_size: int) -> None:
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown encoding '{encoding}': use auto, raw or jpeg")
    if max_side is not None and max_side < 8:
        raise ConfigError(f"--max-side {max_side} is too small: give 8 or more pixels (or leave it out)")
    if not 1 <= quality <= 100:
        raise ConfigError(f"--quality {quality} is out of range: give 1..100")
    if not isinstance(shard_size, int) or shard_size < 1024:
        raise ConfigError(f"shard size {shard_size} bytes is too small: give at least 1 KB (the CLI takes MB)")


def _resolve_encoding(encoding: str, src: Source, max_side: int | None) -> str:
    if encoding != "auto":
        return encoding
    if src.data is not None:
        largest = max(src.data.images.shape[2:])
        largest = min(largest, max_side) if max_side else largest
    else:
        largest = probe_max_side(src.paths, max_side)
    return "raw" if largest <= AUTO_RAW_MAX_SIDE else "jpeg"


def _refuse(out: Path) -> DataError:
    return DataError(
        f"'{out}' is not empty and is not an unfinished pack of this source with these options; "
        "pack into a new or empty folder"
    )


def _prepare(out: Path, key: str) -> dict[str, Any] | None:
    """The finished manifest (same key), the saved state to resume, or None for a fresh pack."""
    entries = {p.name for p in out.iterdir()} - fmt.OWN_NAMES
    if fmt.MANIFEST in entries:
        manifest = fmt.read_manifest(out)
        if manifest.get("key") != key:
            raise _refuse(out)
        return {"done": manifest}
    if fmt.STATE in entries:
        try:
            state = json.loads((out / fmt.STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise _refuse(out) from None
        if state.get("key") != key:
            raise _refuse(out)
        if state.get("format") != fmt.FORMAT:
            raise DataError(f"unfinished pack '{out}' was started by an older sslkit; delete the folder and pack again")
        for shard in state["shards"]:
            file = out / shard["name"]
            if not file.is_file() or file.stat().st_size != shard["bytes"]:
                raise DataError(
                    f"unfinished pack '{out}': {shard['name']} is missing or changed; delete the folder and pack again"
                )
        _drop_unfinished(out, len(state["shards"]))
        return state
    if entries:
        raise _refuse(out)
    return None


def _drop_unfinished(out: Path, done: int) -> None:
    """Remove what a killed pack left after its last recorded shard (temporary files, later shards)."""
    for p in out.iterdir():
        stray_tmp = p.name.startswith(".shard-") and p.name.endswith(".tmp")
        later = p.name.startswith("shard-") and p.name.endswith(".tar") and int(p.name[6:12]) >= done
        if stray_tmp or later:
            p.unlink()
    for p in (out / fmt.STATE_DIR).glob("*.json"):
        if int(p.stem[6:12]) >= done:
            p.unlink()


class _HashingFile:
    """A write-only file that hashes what passes through (tarfile needs write and tell)."""

    def __init__(self, path: Path) -> None:
        # Lives as long as its shard: _ShardWriter closes it (close_shard or abandon), so no `with`.
        self.f = open(path, "wb")  # noqa: SIM115
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        self.f.close()


class _ShardWriter:
    """Streams samples into ``shard-NNNNNN.tar`` files of about ``shard_size`` bytes each."""

    def __init__(self, out: Path, state: dict[str, Any], shard_size: int, labelled: bool) -> None:
        self.out, self.state, self.shard_size, self.labelled = out, state, shard_size, labelled
        self.number = len(state["shards"])
        self.key = sum(s["images"] for s in state["shards"])
        self.tmp: Path | None = None
        self.file: _HashingFile | None = None
        self.tar: tarfile.TarFile | None = None
        self.shard = _Shard(consumed=state["consumed"])

    def add(self, name: str, label: int, item: Encoded | Skipped, extension: str) -> None:
        self.shard.consumed += 1
        if isinstance(item, Skipped):
            self.shard.skipped.append({"file": name, "reason": item.reason})
            return
        if self.tar is None:
            self.tmp = temporary_name(self.out / fmt.shard_name(self.number))
            self.file = _HashingFile(self.tmp)
            # Open across many add() calls and closed in close_shard(), so no `with` (SIM115).
            # The stubs want a full binary file; writing a tar stream only needs write() and tell().
            self.tar = tarfile.open(  # noqa: SIM115
                fileobj=self.file,  # type: ignore[call-overload]
                mode="w",
                format=tarfile.USTAR_FORMAT,
            )
        key = fmt.sample_key(self.key)
        if self.labelled:
            fmt.add_member(self.tar, f"{key}.cls", str(label).encode())
        offset = fmt.add_member(self.tar, f"{key}.{extension}", item.payload)
        self.shard.rows.append([self.number, offset, len(item.payload), label, item.height, item.width, item.checksum])
        self.shard.files.append(name)
        h, w = item.height, item.width
        self.shard.sums = [a + b for a, b in zip(self.shard.sums, (*item.sums, h * w), strict=True)]
        self.key += 1
        if self.file is not None and self.file.size >= self.shard_size:
            self.close_shard()

    def close_shard(self) -> None:
        """Finish the open shard: record it, rename it into place, then save the state."""
        assert self.tar is not None and self.file is not None and self.tmp is not None
        self.tar.close()
        self.file.f.flush()
        os.fsync(self.file.f.fileno())
        self.file.close()
        name = fmt.shard_name(self.number)
        atomic_write_text(self.out / fmt.STATE_DIR / f"{Path(name).stem}.json", json.dumps(asdict(self.shard)))
        os.replace(self.tmp, self.out / name)
        self.state["shards"].append(
            {
                "name": name,
                "sha256": self.file.digest.hexdigest(),
                "bytes": self.file.size,
                "images": len(self.shard.rows),
            }
        )
        self.state["consumed"] = self.shard.consumed
        atomic_write_text(self.out / fmt.STATE, json.dumps(self.state))
        self.number += 1
        self.tar = self.file = self.tmp = None
        self.shard = _Shard(consumed=self.state["consumed"])

    def abandon(self) -> None:
        if self.file is not None and self.tmp is not None:
            self.file.close()
            self.tmp.unlink(missing_ok=True)


_PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when its parent dies


def _worker_init(parent: int) -> None:
    """Make a packing worker die with the packer, even a packer killed with SIGKILL.

    Without this a killed packer leaves its workers blocked on their task pipe for good (and
    the resource tracker, which waits for the workers to close its pipe). Linux: the kernel
    sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG); elsewhere a daemon thread
    watches the parent's PID.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog below still ends this worker
    if os.getppid() != parent:  # the packer died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="sslkit-parent-watchdog").start()


def _watch_parent(parent: int, every: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)  # the packer is gone: nobody will read what this worker makes


def _ordered(fn: Callable[[Any], list], tasks: Iterable[Any], workers: int) -> Iterator[list]:
    """``map(fn, tasks)`` in worker processes, in order, with at most 2 x workers tasks in flight."""
    if workers == 0:
        yield from map(fn, tasks)
        return
    # spawn: workers import only numpy/PIL (no torch, no fork of a threaded parent)
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(os.getpid(),)
    )
    try:
        window: deque = deque()
        for task in tasks:
            window.append(pool.submit(fn, task))
            if len(window) >= 2 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _encoded(
    src: Source, encoding: str, max_side: int | None, quality: int, start: int, workers: int
) -> Generator[Encoded | Skipped, None, None]:  # a generator: the caller closes it
    if src.data is not None:  # already decoded in memory: encoding here is cheaper than shipping arrays
        for rgb in src.arrays(start):
            yield encode_array(cap_array(rgb, max_side), encoding, quality)
        return
    tasks = ((src.paths[i : i + CHUNK], encoding, max_side, quality) for i in range(start, len(src), CHUNK))
    for results in _ordered(encode_files, tasks, workers):
        yield from results


def _mean_std(sums: list[int]) -> tuple[list[float], list[float]]:
    pixels = max(sums[6], 1)
    mean = [s / pixels for s in sums[:3]]
    var = [max(q / pixels - m * m, 0.0) for q, m in zip(sums[3:6], mean, strict=True)]
    return [m / 255 for m in mean], [math.sqrt(v) / 255 for v in var]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(path) would append ".npy" to the temporary name
        np.save(f, array)


def _finish(out: Path, src: Source, state: dict[str, Any], tail: _Shard) -> dict[str, Any]:
    """Join the per-shard records into the index files, then write the manifest (last)."""
    blocks, files, skipped, sums = [], [], [], [0] * 7
    for shard in state["shards"]:  # one record at a time: a million rows as Python lists would cost GBs
        rec = json.loads((out / fmt.STATE_DIR / f"{Path(shard['name']).stem}.json").read_text())
        blocks.append(np.array(rec["rows"], dtype=np.int64).reshape(-1, fmt.COLUMNS[fmt.FORMAT]))
        files += rec["files"]
        skipped += rec["skipped"]
        sums = [a + b for a, b in zip(sums, rec["sums"], strict=True)]
    skipped += tail.skipped
    rows = np.concatenate(blocks) if blocks else np.zeros((0, fmt.COLUMNS[fmt.FORMAT]), dtype=np.int64)
    if len(rows) == 0:
        raise DataError(
            f"source '{src.where}': none of its {len(src)} images could be read (first: {skipped[0]['file']}: "
            f"{skipped[0]['reason']})"
        )
    atomic_write(out / fmt.INDEX, lambda tmp: _save_npy(tmp, rows))
    atomic_write_text(out / fmt.CLASSES, json.dumps(src.classes))
    atomic_write_text(out / fmt.FILES, json.dumps(files))
    manifest = _manifest(out, src, state, rows, skipped, sums)
    atomic_write_text(out / fmt.MANIFEST, json.dumps(manifest, indent=1))
    (out / fmt.STATE).unlink()
    shutil.rmtree(out / fmt.STATE_DIR, ignore_errors=True)
    return manifest


def _manifest(
    out: Path, src: Source, state: dict[str, Any], rows: np.ndarray, skipped: list, sums: list[int]
) -> dict[str, Any]:
    mean, std = _mean_std(sums)
    sizes = rows[:, [fmt.HEIGHT, fmt.WIDTH]]
    return {
        "format": fmt.FORMAT,
        "images": len(rows),
        "labelled": src.labels is not None,
        "classes": len(src.classes),
        "source_images": len(src),
        "skipped_count": len(skipped),
        "skipped": skipped,
        "encoding": state["encoding"],
        "sizes": {
            "min": sizes.min(0).tolist(),
            "max": sizes.max(0).tolist(),
            "uniform": bool((sizes == sizes[0]).all()),
        },
        "mean": mean,
        "std": std,
        "shards": state["shards"],
        "meta": {name: fmt.sha256_file(out / name) for name in fmt.META_FILES},
        "options": state["options"],
        "source": {"kind": src.kind, "where": src.where},
        "key": state["key"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def pack(
    source: str | Path | Source,
    out: str | Path,
    *,
    encoding: Encoding = "auto",
    max_side: int | None = None,
    quality: int = 90,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """Pack a folder, a list file or a registered dataset into the store folder ``out``; returns its manifest.

    ``encoding`` "auto" stores raw pixels when images are at most 64 px on their long side,
    else JPEG at ``quality``; ``max_side`` caps the short side (aspect kept); ``shard_size`` is
    in bytes; ``workers`` decoding processes (default: the CPU count, 0: in this process).
    Re-running a killed pack with the same source and options continues it; a finished pack of
    the same source is returned as is; any other non-empty ``out`` is refused.
    """
    _check_options(encoding, max_side, quality, shard_size)
    src = source if isinstance(source, Source) else resolve_source(source, plugins)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise DataError(f"'{out}' is a file; give a new or empty folder for the store")
    options = {"encoding": encoding, "max_side": max_side, "quality": quality, "shard_size": shard_size}
    key = src.key(options)
    workers = min(os.cpu_count() or 1, 16) if workers is None else max(0, workers)
    with OutputLock(out, "pack", wait=True):
        state = _prepare(out, key)
        if state is not None and "done" in state:
            return state["done"]
        if state is None:
            state = {
                "key": key,
                "format": fmt.FORMAT,
                "options": options,
                "encoding": _resolve_encoding(encoding, src, max_side),
                "shards": [],
                "consumed": 0,
            }
            (out / fmt.STATE_DIR).mkdir(exist_ok=True)
            atomic_write_text(out / fmt.STATE, json.dumps(state))
        else:
            log.info("resuming the pack of '%s' after %d images", src.where, state["consumed"])
        writer = _ShardWriter(out, state, shard_size, src.labels is not None)
        extension = fmt.EXTENSIONS[state["encoding"]]
        start = done = state["consumed"]
        items = _encoded(src, state["encoding"], max_side, quality, start, workers)
        try:
            for item in items:
                label = -1 if src.labels is None else src.labels[done]
                writer.add(src.names[done], label, item, extension)
                done += 1
                if on_progress is not None and (done % CHUNK == 0 or done == len(src)):
                    on_progress(done, len(src))
            if writer.tar is not None:
                writer.close_shard()
        finally:
            items.close()  # stops the worker pool now, also when on_progress or a write raised
            writer.abandon()
        return _finish(out, src, state, writer.shard)
