"""The one image lister (sslkit.files.walk_images / list_images) against a hostile folder.

Each case once broke ``data pack``, ``embed`` or ``train``: a FIFO named like an image hung
them, a name that is not UTF-8 or holds a newline gave tracebacks or a ``.files.txt`` with more
lines than rows, and a link to a sibling class folder made a labelled folder unlabelled.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sslkit.data.folders import load_folder
from sslkit.data.store import Store, pack
from sslkit.embed_stream import open_images
from sslkit.errors import DataError
from sslkit.files import list_images, name_problem, walk_images

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, symlinks and byte names are POSIX")
NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8, a lone surrogate in Python


def _image(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


def _labelled(root: Path) -> Path:
    for cls in ("a", "b"):
        for i in range(3):
            _image(root / cls / f"{i}.png", 40 * i + (100 if cls == "b" else 0))
    return root


def _names_are_text(names: list[str]) -> None:
    """What every output that lists names needs: UTF-8 encodable, one line each."""
    for name in names:
        name.encode("utf-8")
        assert "\n" not in name and "\r" not in name
    assert len("\n".join(names).splitlines()) == len(names)


def _in_thread(fn, timeout: float = 60.0):
    """Run ``fn`` where a hang fails the test instead of hanging the suite (a FIFO blocks open())."""
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(value=fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "hung (reading a FIFO?)"
    return result["value"]


@posix_only
def test_fifo_named_like_an_image_is_not_listed(tmp_path):
    root = _labelled(tmp_path / "lab")
    os.mkfifo(root / "a" / "x.jpg")
    files = walk_images(root)
    assert root / "a" / "x.jpg" not in files and len(files) == 6
    data = _in_thread(lambda: load_folder(root, cache_dir=tmp_path / "cache"))
    assert len(data) == 6 and data.classes == ["a", "b"]
    manifest = _in_thread(lambda: pack(root, tmp_path / "store", workers=0))
    assert manifest["images"] == 6


@posix_only
def test_fifo_given_as_a_file_is_a_one_line_error(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    with pytest.raises(LookupError, match="not a regular file"):
        list_images([tmp_path / "x.jpg"])


@posix_only
def test_link_to_a_regular_file_is_listed(tmp_path):
    root = _labelled(tmp_path / "lab")
    (root / "a" / "linked.png").symlink_to(root / "b" / "0.png")
    assert root / "a" / "linked.png" in walk_images(root)


@posix_only
def test_name_that_is_not_utf8_is_skipped_with_a_warning(tmp_path, caplog):
    root = _labelled(tmp_path / "lab")
    try:
        _image(root / "a" / NOT_UTF8)
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system refuses names that are not UTF-8")
    with caplog.at_level(logging.WARNING):
        files = walk_images(root)
    assert len(files) == 6
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "1 image file(s)" in warning and "not valid UTF-8" in warning and "rename" in warning
    assert r"caf\xe9.png" in warning  # the raw bytes, as a person can find the file
    # downstream: the decode cache key, the pack index, embed's file list
    assert len(load_folder(root, cache_dir=tmp_path / "cache")) == 6
    pack(root, tmp_path / "store", workers=0)
    _names_are_text(Store.open(tmp_path / "store").files)
    _names_are_text(open_images([root]).names())


@posix_only
def test_folder_whose_name_is_not_utf8_is_skipped(tmp_path, caplog):
    root = _labelled(tmp_path / "lab")
    try:
        _image(root / os.fsdecode(b"\xff\xfe") / "0.png")
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system refuses names that are not UTF-8")
    with caplog.at_level(logging.WARNING):
        assert len(walk_images(root)) == 6
    assert "not valid UTF-8" in caplog.text


@posix_only
def test_root_that_is_not_utf8_is_a_one_line_error(tmp_path):
    root = tmp_path / os.fsdecode(b"ph\xf6tos")
    try:
        _image(root / "0.png")
    except (UnicodeEncodeError, OSError):
        pytest.skip("this file system refuses names that are not UTF-8")
    with pytest.raises(DataError, match=r"not valid UTF-8; rename it") as err:
        walk_images(root)
    assert "\n" not in str(err.value)


@posix_only
def test_newline_in_a_name_is_skipped_with_a_warning(tmp_path, caplog):
    root = _labelled(tmp_path / "lab")
    _image(root / "b" / "two\nlines.png")
    with caplog.at_level(logging.WARNING):
        files = walk_images(root)
    assert len(files) == 6
    assert "control characters" in caplog.text and r"two\nlines.png" in caplog.text
    names = open_images([root]).names()
    _names_are_text(names)
    assert len(names) == 6
    with caplog.at_level(logging.WARNING):
        assert list_images([root / "b" / "two\nlines.png", root / "a" / "0.png"]) == [root / "a" / "0.png"]


def test_name_problem():
    assert name_problem("plain name.jpg") is None
    assert name_problem("caf\u00e9 \u00a0nbsp \u200djoiner.jpg") is None  # printable or harmless
    assert name_problem("a\nb.jpg") and name_problem("tab\there.jpg") and name_problem("sep\u2028x.jpg")
    assert name_problem(NOT_UTF8) and name_problem(NOT_UTF8) != name_problem("a\nb.jpg")


@posix_only
def test_link_to_a_sibling_class_folder_keeps_the_labels(tmp_path):
    root = _labelled(tmp_path / "lab")
    (root / "a" / "zlink").symlink_to("../b")  # walked after the real b/, so b keeps its files
    files = walk_images(root)
    assert sorted(f.relative_to(root).as_posix() for f in files) == [f"{c}/{i}.png" for c in "ab" for i in range(3)]
    data = load_folder(root, cache_dir=tmp_path / "cache")
    assert data.classes == ["a", "b"] and data.labels is not None and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    manifest = pack(root, tmp_path / "store", workers=0)
    assert manifest["images"] == 6 and Store.open(tmp_path / "store").classes == ["a", "b"]


@posix_only
def test_links_outside_the_folder_and_loops(tmp_path):
    outside = _labelled(tmp_path / "outside")
    root = _labelled(tmp_path / "lab")
    (root / "c").symlink_to(outside / "a", target_is_directory=True)  # a class folder kept elsewhere
    (root / "a" / "loop").symlink_to("..")
    files = walk_images(root)
    assert sorted(f.relative_to(root).as_posix() for f in files) == [f"{c}/{i}.png" for c in "abc" for i in range(3)]
