"""The on-disk layout of a packed store (no torch: packing workers import this).

A store is a folder of WebDataset tar shards (``shard-000000.tar`` ...; a sample is the tar
members sharing a key: ``KEY.cls`` holds the label as text, ``KEY.jpg`` or ``KEY.npy`` the RGB
image) plus the files sslkit reads instead of scanning the tars:

- ``index.npy``: int64 [N, 6], one row per sample: shard, byte offset and size of the image
  payload inside its tar, label (-1 unlabelled), height, width;
- ``classes.json``, ``files.json``: class names, and each sample's source name (relative);
- ``manifest.json``, written last: format version, counts, shard checksums, skipped files,
  per-channel mean/std, options, encoding, source. No manifest means no (finished) store.
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

FORMAT = "sslkit.store/1"
MANIFEST = "manifest.json"
INDEX = "index.npy"
CLASSES = "classes.json"
FILES = "files.json"
META_FILES = (INDEX, CLASSES, FILES)
STATE = ".pack-state.json"  # an unfinished pack: what is done so far
STATE_DIR = ".pack"  # per-shard records of an unfinished pack
LOCK = ".pack.lock"
OWN_NAMES = {LOCK}  # files a fresh store folder may already hold
# Index columns.
SHARD, OFFSET, SIZE, LABEL, HEIGHT, WIDTH = range(6)
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
                f"store '{path}' is an unfinished pack; re-run the same 'sslkit data pack' command to finish it"
            )
        raise DataError(
            f"'{path}' is not a packed store (no {MANIFEST}); create one with 'sslkit data pack SOURCE -o {path}'"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"store '{path}': unreadable {MANIFEST} ({exc}); re-pack it with 'sslkit data pack'") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
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
