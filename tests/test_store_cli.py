"""``sslkit data pack|info|verify``: what they print, and one line with exit 2 for what the user got wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


def _one_error_line(result, expected):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "a" / "broken.jpg").write_text("not a jpeg")
    return tmp_path / "imgs"


def test_pack_info_verify(folder, tmp_path, cli):
    out = tmp_path / "store"
    result = cli("data", "pack", folder, "-o", out, "--workers", "0", "--shard-size", "0.005")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: 6 images (raw)" in result.stderr and "1 skipped" in result.stderr
    assert "a/broken.jpg: not an image" in result.stderr
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    assert len(shards) > 1
    info = cli("data", "info", out)
    assert info.returncode == 0, info.stderr
    assert (
        "6 images, raw 10x10" in info.stdout and "classes (2): a 3, b 3" in info.stdout and "skipped: 1" in info.stdout
    )
    ok = cli("data", "verify", out)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stderr
    bad = out / shards[1]["name"]
    data = bytearray(bad.read_bytes())
    data[600] ^= 0xFF
    bad.write_bytes(bytes(data))
    _one_error_line(cli("data", "verify", out), f"{shards[1]['name']} fails its sha256 check")


def test_bad_input_is_one_line_exit_2(folder, tmp_path, cli):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    _one_error_line(cli("data", "pack", folder, "-o", tmp_path / "busy"), "is not empty")
    usage = cli("data", "pack", folder, "-o", tmp_path / "s", "--encoding", "png")
    assert usage.returncode == 2 and "'png' is not one of" in usage.stderr and "Traceback" not in usage.stderr
    _one_error_line(cli("data", "pack", folder, "-o", tmp_path / "s", "--quality", "0"), "--quality 0 is out of range")
    _one_error_line(
        cli("data", "pack", tmp_path / "nowhere", "-o", tmp_path / "s"), "no such folder, list file or dataset"
    )
    _one_error_line(cli("data", "info", tmp_path / "nowhere"), "does not exist")
    _one_error_line(cli("data", "verify", folder), "not a packed store")


@pytest.mark.parametrize("size", ["nan", "inf", "0", "-3"])
def test_shard_size_that_is_not_a_positive_number_is_one_line(folder, tmp_path, size, cli):
    _one_error_line(
        cli("data", "pack", folder, "-o", tmp_path / "s", "--shard-size", size),
        f"--shard-size {float(size)}: give a positive number of MB",
    )
    assert not (tmp_path / "s").exists()  # refused before any work


def test_info_gives_each_side_its_range_and_counts_skipped_files_apart(tmp_path, cli):
    rng = np.random.default_rng(1)
    (tmp_path / "mixed").mkdir()
    for i, (w, h) in enumerate([(40, 30), (783, 586), (50, 20)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "mixed" / f"{i}.png")
    (tmp_path / "mixed" / "broken.jpg").write_text("not a jpeg")
    packed = cli("data", "pack", tmp_path / "mixed", "-o", tmp_path / "store", "--workers", "0")
    assert packed.returncode == 0, packed.stderr
    info = cli("data", "info", tmp_path / "store")
    assert info.returncode == 0, info.stderr
    assert "sizes: width 40-783 px, height 20-586 px" in info.stdout, info.stdout
    assert "(3 images, jpeg mixed sizes)" in info.stdout
    assert "(4 files: 3 images packed, 1 unreadable and skipped)" in info.stdout, info.stdout


def test_train_on_an_unfinished_pack_says_how_to_finish_it(folder, tmp_path, cli):
    store = tmp_path / "store"
    store.mkdir()
    (store / ".pack-state.json").write_text("{}")  # what a killed pack leaves (with its first shards)
    result = cli("train", "rotation", "--data", store, "--epochs", "1", "--device", "cpu", "--out", tmp_path / "r")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "unfinished pack" in error[0] and "sslkit data pack" in error[0], result.stderr
    assert "no images found" not in result.stderr
