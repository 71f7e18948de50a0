"""`sslkit embed` / `neighbors` integrity: one writer per output, atomic files, a resume key that
sees replaced images, a file index that survives any file name, kills that lose at most the rows
since the last flush, and damaged stores that stop the run instead of being skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit import create_backbone
from sslkit.cli import main
from sslkit.deploy import OnnxEncoder
from sslkit.embed_stream import RowFile, embed_to_disk, open_images, partial_paths
from sslkit.errors import DataError, SSLKitError
from sslkit.export import export_encoder
from sslkit.files import OutputLock
from sslkit.retrieval import load_collection, save_collection

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(scope="module")
def encoder_file(plugins, tmp_path_factory):
    torch.manual_seed(0)
    backbone = create_backbone("nin", plugins, blocks=3, width=0.1).eval()
    out = tmp_path_factory.mktemp("enc") / "encoder.onnx"
    export_encoder(backbone, out, layer="block2", input_shape=(3, 32, 32), mean=MEAN, std=STD)
    return out


def _images(root: Path, n: int, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return root


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


class _Stop(Exception):
    pass


def _stop_at(count: int):
    def progress(done: int, total: int) -> None:
        if done >= count:
            raise _Stop

    return progress


# ---------------------------------------------------------------------------------------------
# One writer, atomic files


def test_a_second_embed_into_the_same_output_is_refused(encoder_file, tmp_path, capsys):
    """Two `sslkit embed -o e.npy` at once: one died with "Bus error", or the other's file replaced it."""
    images = _images(tmp_path / "pics", 4)
    out = tmp_path / "e.npy"
    assert _cli(capsys, "embed", encoder_file, images, "-o", out, "--provider", "cpu")[0] == 0
    finished = out.read_bytes()
    with OutputLock(out, "embedding", folder=False):  # another sslkit embed is writing it
        code, _, err = _cli(capsys, "embed", encoder_file, images, "-o", out, "--provider", "cpu")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "in use by another sslkit embedding" in err and f"PID {os.getpid()}" in err
    assert out.read_bytes() == finished
    enc = OnnxEncoder(encoder_file, provider="cpu")
    with OutputLock(out, "embedding", folder=False), pytest.raises(SSLKitError, match="in use"):
        embed_to_disk(enc, open_images([images]), out)  # the Python API holds it too


def test_a_fresh_start_never_rewrites_the_old_partial_file_in_place(encoder_file, tmp_path):
    """A map of the old rows (another process's) keeps its file: the new one is renamed over it."""
    enc = OnnxEncoder(encoder_file, provider="cpu")
    out = tmp_path / "e.npy"
    with pytest.raises(_Stop):
        embed_to_disk(enc, open_images([_images(tmp_path / "a", 6)]), out, batch_size=2, progress=_stop_at(2))
    rows, _ = partial_paths(out)
    old_fd = os.open(rows, os.O_RDONLY)
    try:
        old_ino, old_size = os.fstat(old_fd).st_ino, os.fstat(old_fd).st_size
        with pytest.raises(_Stop):
            embed_to_disk(
                enc, open_images([_images(tmp_path / "b", 2, seed=1)]), out, batch_size=1, progress=_stop_at(1)
            )
        assert os.fstat(old_fd).st_size == old_size  # not truncated under the other process's map
        assert os.stat(rows).st_ino != old_ino
    finally:
        os.close(old_fd)


def test_every_collection_file_goes_through_atomic_write(tmp_path, monkeypatch):
    import sslkit.retrieval as retrieval

    written: list[str] = []
    real = retrieval.atomic_write
    monkeypatch.setattr(retrieval, "atomic_write", lambda p, w: written.append(Path(p).name) or real(p, w))
    files = _images(tmp_path / "pics", 2)
    save_collection(tmp_path / "e.npy", np.ones((2, 3), np.float32), sorted(files.iterdir()), {})
    assert written == ["e.npy", "e.files.txt", "e.json"] and not hasattr(retrieval, "_atomic")
    assert np.load(tmp_path / "e.npy").shape == (2, 3) and not list(tmp_path.glob(".*"))


def test_neighbors_grid_is_written_atomically(encoder_file, tmp_path, capsys, monkeypatch):
    images = _images(tmp_path / "pics", 4)
    out, png = tmp_path / "e.npy", tmp_path / "nn.png"
    assert _cli(capsys, "embed", encoder_file, images, "-o", out, "--provider", "cpu")[0] == 0
    png.write_bytes(b"the previous grid")

    def failing_save(self, fp, format=None, **kw):
        Path(fp).write_bytes(b"half a PNG")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    code, _, err = _cli(capsys, "neighbors", out, "--random", "2", "--neighbors", "2", "-o", png)
    assert code == 2 and "error: " in err
    assert png.read_bytes() == b"the previous grid" and not list(tmp_path.glob(".nn.png*"))


# ---------------------------------------------------------------------------------------------
# Resume key, file index


def test_a_replaced_image_is_embedded_again(encoder_file, tmp_path):
    """The resume key hashed names only: an image replaced under the same name kept its old row."""
    enc = OnnxEncoder(encoder_file, provider="cpu")
    folder = _images(tmp_path / "pics", 4)
    out = tmp_path / "e.npy"
    with pytest.raises(_Stop):
        embed_to_disk(enc, open_images([folder]), out, batch_size=2, progress=_stop_at(2))
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(folder / "img0.png")  # same name, new pixels
    stamp = time.time() + 5
    os.utime(folder / "img0.png", (stamp, stamp))
    result = embed_to_disk(enc, open_images([folder]), out, batch_size=2)
    assert result.resumed_at == 0
    coll = load_collection(out)
    np.testing.assert_allclose(coll.embeddings, enc.embed_files(coll.files).embeddings, rtol=1e-6)


def test_file_names_with_line_breaks_keep_one_row_each(encoder_file, tmp_path, capsys):
    """A newline in a name gave e.files.txt 7 lines for 6 rows, and `neighbors` asked to re-embed
    forever. Such a name is now skipped with one warning (files.name_problem); quotes are kept."""
    folder = _images(tmp_path / "pics", 3)
    (folder / "img1.png").rename(folder / "two\nlines.png")
    (folder / "img2.png").rename(folder / '"quoted".png')
    out = tmp_path / "e.npy"
    code, _, err = _cli(capsys, "embed", encoder_file, folder, "-o", out, "--provider", "cpu")
    assert code == 0, err
    assert "control characters" in err and "skipped 1 image" in err, err
    index = (tmp_path / "e.files.txt").read_text(encoding="utf-8")
    assert index.count("\n") == 2
    coll = load_collection(out)
    assert sorted(p.name for p in coll.files) == sorted(['"quoted".png', "img0.png"])
    assert all(p.is_file() for p in coll.files)
    code, _, err = _cli(capsys, "neighbors", out, "--random", "2", "--neighbors", "1", "-o", tmp_path / "nn.png")
    assert code == 0, err


def test_an_index_that_does_not_match_the_rows_is_one_line_saying_what_to_do(tmp_path, capsys):
    files = sorted(_images(tmp_path / "pics", 2).iterdir())
    save_collection(tmp_path / "e.npy", np.ones((2, 3), np.float32), files, {})
    (tmp_path / "e.files.txt").write_text("img0.png\nimg\n1.png\n")  # an older sslkit's index
    code, _, err = _cli(capsys, "neighbors", tmp_path / "e.npy", "-o", tmp_path / "nn.png")
    assert code == 2 and err.count("\n") == 1
    assert "lists 3 file names for 2 embeddings" in err and "--restart" in err


# ---------------------------------------------------------------------------------------------
# Flushes and kills


def test_rows_are_flushed_every_sync_seconds_not_every_batch(encoder_file, tmp_path, monkeypatch):
    """Every batch flushed the whole memory map and rewrote the progress file: CPU-bound."""
    syncs: list[int] = []
    real = RowFile.sync
    monkeypatch.setattr(RowFile, "sync", lambda self: syncs.append(1) or real(self))
    enc = OnnxEncoder(encoder_file, provider="cpu")
    source = open_images([_images(tmp_path / "pics", 8)])
    embed_to_disk(enc, source, tmp_path / "e.npy", batch_size=1, sync_seconds=3600)
    assert len(syncs) == 1  # once, before the end; 8 batches
    syncs.clear()
    embed_to_disk(enc, source, tmp_path / "f.npy", batch_size=1, sync_seconds=0)
    assert len(syncs) == 8


KILLER = textwrap.dedent("""
    import os, signal, sys
    from sslkit.deploy import OnnxEncoder
    from sslkit.embed_stream import embed_to_disk, open_images

    model, folder, out, kill_at, sync = sys.argv[1:6]

    def progress(done, total):
        if done >= int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

    enc = OnnxEncoder(model, provider="cpu")
    embed_to_disk(enc, open_images([folder]), out, batch_size=2, progress=progress, sync_seconds=float(sync))
""")


@pytest.mark.parametrize("sync,resumed", [(0, 4), (3600, 0)])
def test_sigkill_loses_at_most_the_rows_since_the_last_flush(encoder_file, tmp_path, sync, resumed):
    folder = _images(tmp_path / "pics", 6)
    out = tmp_path / "e.npy"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(encoder_file), str(folder), str(out), "4", str(sync)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()  # the lock died with its process: the re-run below takes it
    enc = OnnxEncoder(encoder_file, provider="cpu")
    result = embed_to_disk(enc, open_images([folder]), out, batch_size=2)
    assert result.resumed_at == resumed
    coll = load_collection(out)
    np.testing.assert_allclose(coll.embeddings, enc.embed_files(coll.files).embeddings, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Damaged stores


@pytest.fixture
def store(tmp_path):
    packing = pytest.importorskip("sslkit.data.store")
    packing.pack(_images(tmp_path / "pics", 4), tmp_path / "store", encoding="raw", workers=0)
    return tmp_path / "store"


def test_a_damaged_store_stops_embed_with_its_one_line_error(encoder_file, store, tmp_path, capsys, monkeypatch):
    from sslkit.data.store import Store

    message = f"store '{store}': shard 0 fails its checksum; run 'sslkit data verify {store}'"

    def damaged(self, i):
        raise DataError(message)

    monkeypatch.setattr(Store, "read", damaged)
    code, _, err = _cli(capsys, "embed", encoder_file, store, "-o", tmp_path / "s.npy", "--provider", "cpu")
    assert code == 2 and err.endswith(f"\nerror: {message}\n") and err.count("error: ") == 1
    assert not (tmp_path / "s.npy").exists()


def test_one_undecodable_store_payload_is_skipped(encoder_file, store, tmp_path, capsys, monkeypatch):
    from sslkit.data.store import Store

    real = Store.read

    def one_bad(self, i):
        if i == 1:
            raise OSError("image file is truncated")
        return real(self, i)

    monkeypatch.setattr(Store, "read", one_bad)
    code, _, err = _cli(capsys, "embed", encoder_file, store, "-o", tmp_path / "s.npy", "--provider", "cpu")
    assert code == 0 and "skipped 1 unreadable" in err
    assert np.load(tmp_path / "s.npy").shape[0] == 3
    meta = json.loads((tmp_path / "s.json").read_text())
    assert len(meta["skipped"]) == 1
