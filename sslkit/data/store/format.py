"""The on-disk layout of a packed store (no torch: packing workers import this).

A store is a folder of WebDataset tar shards (``shard-000000.tar`` ...; a sample is the tar
members sharing a key: ``KEY.cls`` holds the label as text, ``KEY.jpg`` or ``KEY.npy`` the RGB
image) plus the files sslkit reads instead of scanning the tars:

- ``index.npy``: int64 [N, 7], one row per sample: shard, byte offset and size of the image
  payload inside its tar, label (-1 unlabelled), height, width, checksum of the sample
  (:func:`checksum`: of the pixel bytes of a raw sample, of the whole JPEG payload);
- ``classes.json``, ``files.json``: class names, and each sample's source name (relative);
- ``manifest.json``, written last: format version, counts, shard checksums, skipped files,
  per-channel mean/std, options, encoding, source, and the sha256 of the files above. No
  manifest means no (finished) store.

Format 1 (``sslkit.store/1``) had no checksum column; such stores still open and read, their
index checked against the manifest, their samples unchecked.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError

FORMAT = "sslkit.store/2"
FORMAT_V1 = "sslkit.store/1"  # no per-sample checksums: read, not checked sample by sample
FORMATS = (FORMAT, FORMAT_V1)
MANIFEST = "manifest.json"
INDEX = "index.npy"
CLASSES = "classes.json"
FILES = "files.json"
META_FILES = (INDEX, CLASSES, FILES)
STATE = ".pack-state.json"  # an unfinished pack: what is done so far
STATE_DIR = ".pack"  # per-shard records of an unfinished pack
LOCK = ".lock"  # sslkit.files.OutputLock's file, held while packing (removed when done)
OWN_NAMES = {LOCK, ".pack.lock"}  # files a fresh store folder may already hold (.pack.lock: older sslkit)
# Index columns.
SHARD, OFFSET, SIZE, LABEL, HEIGHT, WIDTH, CHECKSUM = range(7)
COLUMNS = {FORMAT: 7, FORMAT_V1: 6}
EXTENSIONS = {"raw": "npy", "jpeg": "jpg"}


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def sample_key(i: int) -> str:
    return f"{i:09d}"


def npy_bytes(image: np.ndarray) -> bytes:
    """``image`` [H, W, 3] uint8 as the bytes of a .npy file (what ``np.save`` writes)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(image), allow_pickle=False)
    return buf.getvalue()


@functools.lru_cache(maxsize=4096)
def _npy_header(prefix: bytes) -> tuple[int, tuple[int, ...]]:
    """(data offset, shape) of a .npy payload from its first bytes (cached: a store has few shapes)."""
    if prefix[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy payload")
    start = 10 if prefix[6] == 1 else 12
    length = int.from_bytes(prefix[8:start], "little")
    header = ast.literal_eval(prefix[start : start + length].decode("latin1"))
    if header.get("fortran_order") or np.dtype(header["descr"]) != np.uint8:
        raise ValueError(f"unexpected .npy header {header}")
    return start + length, tuple(header["shape"])


def npy_data_offset(payload: bytes | bytearray | memoryview) -> tuple[int, tuple[int, ...]]:
    view = memoryview(payload)
    start = 10 if len(view) > 6 and view[6] == 1 else 12
    length = int.from_bytes(view[8:start], "little")
    return _npy_header(bytes(view[: start + length]))


def parse_npy(payload: bytes | bytearray | memoryview) -> np.ndarray:
    """A .npy payload as an array viewing ``payload`` (no copy of the pixels).

    Only the header is parsed (and remembered); ``np.frombuffer`` maps the rest. A writable
    payload (bytearray) gives a writable array.
    """
    offset, shape = npy_data_offset(payload)
    count = int(np.prod(shape))
    return np.frombuffer(payload, dtype=np.uint8, count=count, offset=offset).reshape(shape)


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> int:
    """Append one member; returns the byte offset of its payload inside the tar file.

    Headers carry no time or owner, so the same images always give the same shard bytes.
    """
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o444
    tar.addfile(info, io.BytesIO(payload))
    # addfile leaves tar.offset at the end of the 512-byte padded payload.
    return tar.offset - -(-len(payload) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- per-sample checksums ---------------------------------------------------------------------
# A weighted sum of the payload's little-endian 64-bit words, modulo 2**64: word j is weighted by
# (2j + 1) * 0x9E3779B97F4A7C15, an odd number, so a change to any one word always changes the sum,
# and a swap of two words changes it. The payload is zero-padded to whole words.
# Why not a CRC or xxhash: the sum is one numpy einsum over a whole raw batch, ~0.17 us a 32 px
# image on this 2-core machine where a hash call per sample costs 0.3 (xxh3) to 1.2 us (zlib.crc32)
# (benchmarks/data_scale.py, "checksums"), and a raw 32 px batch read costs ~2 us an image in all.
# numpy, not torch: a torch reduction over the batch (0.14 us an image on one thread) uses all of
# torch's threads and stalled at 60 us an image while other processes shared the 2 cores.
# It is for damage (bit rot, truncation, edits), not for a forger: 'sslkit data verify' checks sha256.
CHECK_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
CHECK_WORDS = 8192  # weights tabulated for 64 KB; longer payloads go in chunks of this many words
CHECK_WEIGHTS = (np.arange(CHECK_WORDS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)) * CHECK_GOLDEN


def batch_checksums(rows: np.ndarray) -> np.ndarray:
    """The checksum of every row of ``rows`` (uint8 [B, step]) as int64 [B], as the index stores it."""
    b, step = rows.shape
    if step % 8 or not rows.flags.c_contiguous:  # zero-pad each row to whole words (odd sizes only)
        padded = np.zeros((b, -(-step // 8) * 8), dtype=np.uint8)
        padded[:, :step] = rows
        rows = padded
    words = rows.view("<u8")  # [B, n]
    sums = np.zeros(b, dtype=np.uint64)
    for start in range(0, words.shape[1], CHECK_WORDS):
        chunk = words[:, start : start + CHECK_WORDS]
        sums += np.einsum("bj,j->b", chunk, CHECK_WEIGHTS[: chunk.shape[1]])
        if start:  # weight of word start + j = weight of word j + 2 * start * golden
            step_up = np.array([2 * start], dtype=np.uint64) * CHECK_GOLDEN  # wraps silently, as arrays do
            sums += chunk.sum(1, dtype=np.uint64) * step_up
    return sums.view(np.int64)


def checksum(payload: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The checksum of one payload (see above) as a signed int64; equal to its row's :func:`batch_checksums`."""
    data = payload.reshape(-1) if isinstance(payload, np.ndarray) else np.frombuffer(payload, dtype=np.uint8)
    if len(data) % 8:  # zero-padded to whole words
        data = np.concatenate([data, np.zeros(8 - len(data) % 8, dtype=np.uint8)])
    words = np.ascontiguousarray(data).view("<u8")
    total = np.zeros(1, dtype=np.uint64)  # an array: its sums wrap modulo 2**64 without a warning
    for start in range(0, len(words), CHECK_WORDS):
        chunk = words[start : start + CHECK_WORDS]
        total += np.dot(chunk, CHECK_WEIGHTS[: len(chunk)])
        if start:
            total += chunk.sum(dtype=np.uint64) * (np.array([2 * start], dtype=np.uint64) * CHECK_GOLDEN)
    return int(total.view(np.int64)[0])


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the store at ``path``, or a one-line DataError saying what is wrong."""
    if not path.exists():
        raise DataError(f"store '{path}' does not exist; create it with 'sslkit data pack SOURCE -o {path}'")
    if not path.is_dir():
        raise DataError(f"store '{path}' is not a folder; give the folder 'sslkit data pack' wrote")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        if (path / STATE).is_file():
            raise DataError(
                f"store '{path}' is an unfinished pack (packing stopped before the end); run the same 'sslkit data "
                f"pack SOURCE -o {path}' again: it resumes where it stopped"
            )
        raise DataError(
            f"'{path}' is not a packed store (no {MANIFEST}); create one with 'sslkit data pack SOURCE -o {path}'"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"store '{path}': unreadable {MANIFEST} ({exc}); re-pack it with 'sslkit data pack'") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(
            f"store '{path}': format {found!r} is not {FORMAT!r}; re-pack it with this sslkit's 'sslkit data pack'"
        )
    missing = [
        k for k in ("images", "labelled", "sizes", "shards", "encoding", "mean", "std", "meta") if k not in manifest
    ]
    if missing:
        raise DataError(f"store '{path}': {MANIFEST} lacks {', '.join(missing)}; re-pack it with 'sslkit data pack'")
    return manifest
