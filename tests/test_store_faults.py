"""Fault injection: a damaged store (bytes flipped inside a sample, an edited index, a deleted or
truncated shard) stops every product path that reads it with one line naming the damaged file
and 'sslkit data verify': the training loop's reader, Store.to_imagedata (what probes use), and
'sslkit train --data STORE' (exit 2, one line on stderr, no traceback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.config import assemble
from sslkit.data.opener import open_training_data
from sslkit.data.store import Store, pack
from sslkit.data.training import StoreSource, iterate_batches
from sslkit.errors import DataError
from store_damage import DAMAGES, damage

ENCODINGS = ("raw", "jpeg")


def _store(tmp_path, encoding):
    """32 same-size labelled images in two shards (uniform size: to_imagedata reads it)."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(16):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / c / f"{i:02d}.png")
    out = tmp_path / "store"
    pack(tmp_path / "imgs", out, encoding=encoding, shard_size=32 << 10 if encoding == "raw" else 16 << 10, workers=0)
    assert len(Store.open(out).manifest["shards"]) > 1
    return out


def _one_line(err: pytest.ExceptionInfo, names: str) -> str:
    line = str(err.value)
    assert "\n" not in line and names in line and "sslkit data verify" in line, line
    return line


def _read_all_in_the_loop(path, plugins, workers):
    config = assemble(
        "rotation",
        plugins,
        sets=[f"data.name={path}", "data.in_memory=false", f"data.workers={workers}"],
        flags={"device": "cpu"},
    )
    source = open_training_data(config.data, plugins)
    assert isinstance(source, StoreSource)
    batches = [torch.arange(i, min(i + 8, len(source))) for i in range(0, len(source), 8)]
    return [b.images for b in iterate_batches(source, batches, torch.device("cpu"), config.data.workers)]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damage_stops_the_training_reader_and_to_imagedata(tmp_path, plugins, encoding, kind):
    path = _store(tmp_path, encoding)
    workers = 0 if encoding == "raw" else 1  # raw: read in the loop's process; JPEG: in a DataLoader worker
    assert len(torch.cat(_read_all_in_the_loop(path, plugins, workers))) == 32  # intact: reads
    name = damage(path, kind)
    with pytest.raises(DataError) as err:
        _read_all_in_the_loop(path, plugins, workers)
    _one_line(err, name)
    with pytest.raises(DataError) as err:
        Store.open(path).to_imagedata()
    _one_line(err, name)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_flipped_bytes_name_the_sample(tmp_path, encoding):
    path = _store(tmp_path, encoding)
    damage(path, "flipped bytes")  # sample 5
    store = Store.open(path)
    store.read(4)  # its neighbours read
    with pytest.raises(DataError) as err:
        store.read(5)
    assert "sample 5 " in _one_line(err, "fails its checksum")
    if encoding == "raw":
        with pytest.raises(DataError) as err:
            store.read_batch([0, 5, 6])
        assert "sample 5 " in _one_line(err, "fails its checksum")
    with pytest.raises(DataError) as err:
        store.read_bytes(5)  # the payload decode=gpu and embed read
    _one_line(err, "fails its checksum")


def test_edited_index_fails_at_open_and_info(tmp_path, cli):
    path = _store(tmp_path, "raw")
    damage(path, "edited index")
    with pytest.raises(DataError) as err:
        Store.open(path)
    _one_line(err, "index.npy fails its sha256 check")
    result = cli("data", "info", str(path))
    assert result.returncode == 2 and "classes (2)" not in result.stdout
    assert result.stderr.strip().startswith("error: ") and "index.npy" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("encoding", "kind"),
    [
        ("raw", "flipped bytes"),
        ("jpeg", "flipped bytes"),
        ("raw", "edited index"),
        ("jpeg", "deleted shard"),
        ("raw", "truncated shard"),
    ],
)
def test_cli_train_on_a_damaged_store_is_one_line_exit_2(tmp_path, encoding, kind, cli):
    path = _store(tmp_path, encoding)
    name = damage(path, kind)
    result = cli(
        "train", "rotation", "--data", str(path), "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run"),
        "--set", "backbone.blocks=3", "--set", "backbone.width=0.1", "--set", "data.batch_size=8",
        "--set", "data.in_memory=false", "--set", "data.workers=1",
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # train reports its set-up first
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and errors[0] == lines[-1] and name in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "sslkit data verify" in errors[0]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_runs_embed_and_probe_stop_on_a_damaged_store(tmp_path, plugins, encoding):
    """The Python API reads stores through the same checks: ``sslkit.load(run).embed(STORE)`` and
    ``run.probe(STORE)`` stop with the one-line error (never a skipped image)."""
    import sslkit

    path = _store(tmp_path, encoding)
    run = sslkit.train(
        "rotation", tmp_path / "run", data="sample", plugins=plugins, epochs=1, device="cpu",
        **{"backbone.blocks": 3, "backbone.width": 0.1, "data.subset": 32, "data.batch_size": 16},
    )  # fmt: skip
    features, names = run.embed(path, with_names=True)
    assert features.shape[0] == len(names) == 32
    name = damage(path, "flipped bytes")
    with pytest.raises(DataError) as err:
        run.embed(path)
    _one_line(err, name)
    with pytest.raises(DataError) as err:
        run.probe(str(path), probe="knn", layers=["block2"], device="cpu")
    _one_line(err, name)
