"""Training from packed stores: the same images as RAM, any image size, mid-epoch resume, run folders."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.config import assemble
from sslkit.data.augment import Crop, center_boxes, random_resized_boxes, resample_boxes
from sslkit.data.folders import load_folder
from sslkit.data.opener import open_training_data
from sslkit.data.training import StoreSource, iterate_batches
from sslkit.engine.metrics import TIMING_KEYS
from sslkit.engine.rundir import RunLock
from sslkit.engine.trainer import train
from sslkit.errors import CheckpointError, ConfigError
from sslkit.files import OutputBusyError
from sslkit.interfaces import Callback

TINY = ["backbone.blocks=3", "backbone.width=0.1", "data.batch_size=16", "data.holdout=0.2"]


def _folder(root, n=48, size=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            a[: size[1] // 2] //= 3  # a dark top half: rotation is learnable
            Image.fromarray(a).save(root / c / f"{i:03d}.png")
    return root


def _mixed(root, seed=0):
    """Mixed sizes, formats and modes, as a user's own collection is."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    sizes = [(40, 30), (64, 64), (120, 90), (200, 150), (640, 480), (90, 160), (50, 50), (300, 200)]
    for i in range(40):
        w, h = sizes[i % len(sizes)]
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        a[: h // 2] //= 3
        im = Image.fromarray(a)
        if i % 5 == 1:
            im = im.convert("L")
        if i % 7 == 2:
            im = im.convert("RGBA")
        ext = "png" if i % 2 or im.mode == "RGBA" else "jpg"
        im.save(root / f"img{i:03d}.{ext}")
    return root


def _config(plugins, data, epochs=1, extra=(), task="rotation"):
    return assemble(task, plugins, sets=[*TINY, f"data.name={data}", *extra], flags={"epochs": epochs, "device": "cpu"})


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def test_store_and_memory_paths_yield_the_same_images(plugins, tmp_path):
    from sslkit.data.store import Store, pack

    folder = _folder(tmp_path / "imgs")
    pack(folder, tmp_path / "store", encoding="raw")
    memory = load_folder(folder)
    stream = StoreSource(Store.open(tmp_path / "store"))
    assert memory.files == stream.store.files and torch.equal(memory.labels, stream.labels)
    order = torch.randperm(len(memory), generator=torch.Generator().manual_seed(0))
    batches = [order[i : i + 10] for i in range(0, 40, 10)]
    got_m = list(iterate_batches(memory, batches, torch.device("cpu")))
    for workers in (2, 0):  # DataLoader workers, and read in this process
        got_s = list(iterate_batches(stream, batches, torch.device("cpu"), workers=workers))
        assert len(got_s) == 4
        for a, b in zip(got_m, got_s, strict=True):
            assert torch.equal(a.images, b.images)
            assert a.sizes is None and b.sizes is None  # every image fills its batch, in RAM as in the store


def test_store_training_matches_memory_training(plugins, tmp_path):
    """Same images, same seed: the streamed run's curve is the in-memory run's, number for number."""
    from sslkit.data.store import pack

    folder = _folder(tmp_path / "imgs", n=64)
    pack(folder, tmp_path / "store", encoding="raw")
    stats = ["data.mean=[0.4,0.4,0.4]", "data.std=[0.25,0.25,0.25]"]  # the two measure them differently
    memory = train(_config(plugins, str(folder), 2, stats), tmp_path / "a", plugins=plugins).history
    stream = train(
        _config(plugins, str(tmp_path / "store"), 2, [*stats, "data.in_memory=false", "data.workers=1"]),
        tmp_path / "b",
        plugins=plugins,
    )
    assert _strip(stream.history) == _strip(memory)
    info = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["data"]
    assert info["shape"] == [3, 32, 32] and info["images"] == 64


def test_mixed_sizes_pack_into_the_cache_and_train_at_64px(plugins, tmp_path):
    folder = _mixed(tmp_path / "mixed")
    cfg = _config(
        plugins, str(folder), 1, ["data.image_size=64", "data.in_memory=auto", "data.memory_budget_gb=0.0001"]
    )
    source = open_training_data(cfg.data, plugins)
    assert isinstance(source, StoreSource) and source.uniform_size is None and len(source) == 40
    result = train(cfg, tmp_path / "run", plugins=plugins)
    assert result.history[0]["train_loss"] > 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["data"]["shape"] == [3, 64, 64] and state["config"]["data"]["crop"] == "auto"


def test_mixed_sizes_without_image_size_is_one_line(plugins, tmp_path):
    folder = _mixed(tmp_path / "mixed")
    with pytest.raises(ConfigError, match="data.image_size"):
        train(_config(plugins, str(folder), 1, ["data.memory_budget_gb=0.0001"]), tmp_path / "run", plugins=plugins)


def test_context_trains_at_96px_from_a_mixed_store(plugins, tmp_path):
    from sslkit.data.store import pack

    pack(_mixed(tmp_path / "mixed"), tmp_path / "store")
    cfg = _config(plugins, str(tmp_path / "store"), 1, ["data.image_size=96", "data.batch_size=8"], task="context")
    result = train(cfg, tmp_path / "run", plugins=plugins)
    assert result.history[0]["train_loss"] > 0 and "heldout_acc" in result.history[0]


def test_random_resized_boxes_stay_inside_each_image():
    sizes = torch.tensor([[30, 40], [480, 640], [160, 90], [8, 300]])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        boxes = random_resized_boxes(sizes, (0.08, 1.0), (3 / 4, 4 / 3), g)
        x1, y1, x2, y2 = boxes.unbind(1)
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 > x1).all() and (y2 > y1).all()
        assert (x2 <= sizes[:, 1]).all() and (y2 <= sizes[:, 0]).all()
    # An image too thin for any allowed ratio falls back to its centre, ratio clamped.
    thin = random_resized_boxes(torch.tensor([[8, 300]]), (0.9, 1.0), (3 / 4, 4 / 3), g)[0]
    assert (thin[2] - thin[0]) / (thin[3] - thin[1]) == pytest.approx(4 / 3, rel=0.1)


def test_boxes_differ_per_image_and_global_draws_slice():
    """Each image gets its own box; drawing for the global batch and slicing equals drawing alone."""
    sizes = torch.tensor([[100, 100]] * 8)
    whole = random_resized_boxes(sizes, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(3))
    assert len({tuple(b.tolist()) for b in whole}) == 8
    half = random_resized_boxes(
        sizes[4:], (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(3), total=8, offset=4
    )
    assert torch.equal(half, whole[4:])


def test_resample_center_box_of_a_same_size_image_is_identity():
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = resample_boxes(x, center_boxes(torch.tensor([[16, 16], [16, 16]])), 16)
    torch.testing.assert_close(out, x.float(), atol=1e-3, rtol=0)


def test_resample_reads_only_the_valid_region_of_padded_images():
    """A small image padded with zeros into a big batch tensor: its crop never sees the padding."""
    x = torch.full((2, 3, 50, 60), 0, dtype=torch.uint8)
    x[1, :, :20, :30] = 200  # image 1 is 20x30 inside the padding
    crop = Crop("random_resized", 8, scale=(0.5, 1.0))
    out = crop(x, torch.tensor([[50, 60], [20, 30]]), torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 8, 8) and out[1].min() > 150


class _CrashAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step(self, epoch, step, steps, metrics):
        if epoch == 1 and step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_mid_epoch_checkpoint_resumes_at_its_step(plugins, tmp_path, schedule):
    """checkpoint.every_steps: a run killed mid-epoch resumes at the saved step and ends with the
    uninterrupted run's metrics and weights (cosine: a new rate every step, recomputed on resume)."""
    folder = _folder(tmp_path / "imgs", n=200)
    # 192 images, 12 steps an epoch
    extra = ["checkpoint.every_steps=3", "data.holdout=0.04", f"schedule.kind={schedule}"]
    straight = train(_config(plugins, str(folder), 2, extra), tmp_path / "a", plugins=plugins).history
    with pytest.raises(KeyboardInterrupt):
        train(_config(plugins, str(folder), 2, extra), tmp_path / "b", plugins=plugins, callbacks=[_CrashAt(10)])
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 9)
    resumed = train(_config(plugins, str(folder), 2, extra), tmp_path / "b", plugins=plugins, resume=True).history
    assert _strip(resumed) == _strip(straight)
    if schedule == "cosine":  # each epoch records its last step's rate: 0.1 x cos schedule at 11/24, 23/24
        assert [r["lr"] for r in straight] == pytest.approx([0.05 * (1 + math.cos(math.pi * k / 24)) for k in (11, 23)])
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["backbone"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_without_checkpoint_is_an_error_unless_auto(plugins, tmp_path):
    folder = _folder(tmp_path / "imgs")
    with pytest.raises(CheckpointError, match="--resume auto"):
        train(_config(plugins, str(folder)), tmp_path / "run", plugins=plugins, resume=True)
    first = train(_config(plugins, str(folder)), tmp_path / "run", plugins=plugins, resume="auto").history
    again = train(_config(plugins, str(folder), 2), tmp_path / "run", plugins=plugins, resume="auto").history
    assert len(first) == 1 and len(again) == 2 and again[0] == first[0]


def test_resume_updates_config_json_and_records_changes(plugins, tmp_path):
    """config.json always says what the run is (the checkpoint's config); the checkpoint's
    ``resumes`` say what each resume changed."""
    folder = _folder(tmp_path / "imgs")
    train(_config(plugins, str(folder), 1), tmp_path / "run", plugins=plugins)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 1
    train(_config(plugins, str(folder), 2), tmp_path / "run", plugins=plugins, resume=True)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["resumes"][0]["changes"] == {"epochs": [1, 2]} and state["config"]["epochs"] == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == state["config"]


def test_resume_with_fewer_epochs_than_done_is_an_error(plugins, tmp_path):
    folder = _folder(tmp_path / "imgs")
    train(_config(plugins, str(folder), 2), tmp_path / "run", plugins=plugins)
    with pytest.raises(CheckpointError, match="already trained 2 epochs"):
        train(_config(plugins, str(folder), 1), tmp_path / "run", plugins=plugins, resume=True)


def test_resume_on_changed_data_names_the_change(plugins, tmp_path):
    folder = _folder(tmp_path / "imgs")
    train(_config(plugins, str(folder), 1), tmp_path / "run", plugins=plugins)
    Image.new("RGB", (32, 32), (9, 9, 9)).save(folder / "cat" / "new.png")
    with pytest.raises(CheckpointError, match="data changed.*48 images then, 49 now"):
        train(_config(plugins, str(folder), 2), tmp_path / "run", plugins=plugins, resume=True)


def test_a_second_writer_is_refused_naming_the_holder(plugins, tmp_path):
    import os

    folder = _folder(tmp_path / "imgs")
    with (
        RunLock(tmp_path / "run"),
        pytest.raises(OutputBusyError, match=f"in use by another sslkit run \\(PID {os.getpid()}\\)"),
    ):
        train(_config(plugins, str(folder)), tmp_path / "run", plugins=plugins)
    assert not (tmp_path / "run" / "config.json").exists()  # refused before writing anything
    train(_config(plugins, str(folder)), tmp_path / "run", plugins=plugins)  # the lock died with its holder


def test_out_that_is_a_file_is_one_line(plugins, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        train(_config(plugins, "sample"), tmp_path / "f", plugins=plugins)


def test_mixed_collection_end_to_end_cli(tmp_path, cli):
    """A user's own mixed collection: pack, train rotation at 64 px from the store, probe (kNN),
    export, embed the store: every command exits 0."""

    def sslkit(*args):
        done = cli(*args, env={"SSLKIT_DATA": str(tmp_path / "cache")})
        assert done.returncode == 0, (args, done.stderr[-3000:])
        return done

    for label in ("a", "b"):
        _mixed(tmp_path / "photos" / label, seed=ord(label))
    (tmp_path / "photos" / "a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    packed = sslkit("data", "pack", tmp_path / "photos", "-o", tmp_path / "store", "--workers", "1")
    assert "80 images" in packed.stdout + packed.stderr and "1 skipped" in packed.stdout + packed.stderr
    run = tmp_path / "run"
    sslkit(
        "train",
        "rotation",
        "--data",
        tmp_path / "store",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        run,
        "--set",
        "backbone.blocks=3",
        "--set",
        "backbone.width=0.1",
        "--set",
        "data.image_size=64",
        "--set",
        "data.batch_size=16",
        "--set",
        "data.in_memory=false",
        "--set",
        "data.workers=1",
    )
    sslkit("probe", run, "--probe", "knn", "--data", tmp_path / "store", "--layer", "block2", "--device", "cpu")
    report = json.loads((run / "probe.json").read_text())
    assert 0.0 <= report["layers"]["block2"]["test_acc"] <= 1.0
    sslkit("export", run, "-o", tmp_path / "enc.onnx")
    sslkit("embed", tmp_path / "enc.onnx", tmp_path / "store", "-o", tmp_path / "emb.npy", "--provider", "cpu")
    assert np.load(tmp_path / "emb.npy").shape[0] == 80


@pytest.mark.parametrize("batch_reads", ["auto", "pread"])
def test_raw_batches_equal_single_reads_and_a_cut_sample_is_one_line(tmp_path, batch_reads):
    """read_batch (one io_uring call a batch where Linux offers it, else a preadv an image)
    reads the pixels read() decodes, batches longer than the ring too; a shard cut short after
    opening is a one-line error naming it."""
    from sslkit.data.store import Store, pack
    from sslkit.errors import DataError

    pack(_folder(tmp_path / "imgs", n=300, size=(8, 8)), tmp_path / "store", encoding="raw", shard_size=100_000)
    store = Store.open(tmp_path / "store", batch_reads=batch_reads)
    assert len(store.manifest["shards"]) > 1
    for n in (1, 20, 300):  # 300 > the ring's 256 slots: two submissions
        idx = np.random.default_rng(n).permutation(len(store))[:n]
        assert torch.equal(store.read_batch(idx), torch.stack([store.read(int(i)) for i in idx]))
    shard = sorted((tmp_path / "store").glob("shard-*.tar"))[1]
    os.truncate(shard, shard.stat().st_size // 2)  # the descriptor is already open and size-checked
    with pytest.raises(DataError, match=f"{shard.name}.*cut short"):
        store.read_batch(np.arange(len(store)))


def test_batch_reads_fall_back_to_preadv_without_io_uring_and_after_a_broken_ring(tmp_path, monkeypatch):
    """No io_uring (seccomp, old kernel, not Linux): preadv, same pixels. A ring left half-way by
    an interrupt is never reused; forked workers open their own (DataLoader, 2 workers)."""
    from sslkit.data.store import Store, pack, uring

    pack(_folder(tmp_path / "imgs", n=40, size=(8, 8)), tmp_path / "store", encoding="raw")
    idx = np.arange(40)[::-1].copy()
    expected = Store.open(tmp_path / "store", batch_reads="pread").read_batch(idx)
    store = Store.open(tmp_path / "store")
    assert torch.equal(store.read_batch(idx), expected)
    ring = store._reads._ring
    if ring is not None:  # this kernel has io_uring: break the ring, a new one replaces it
        ring.broken = True
        assert torch.equal(store.read_batch(idx), expected)
        assert store._reads._ring is not ring and store._reads._ring is not None
    source = StoreSource(store)
    batches = [torch.arange(i, i + 10) for i in range(0, 40, 10)]
    got = torch.cat([b.images for b in iterate_batches(source, batches, torch.device("cpu"), workers=2)])
    assert torch.equal(got, store.read_batch(np.arange(40)))
    monkeypatch.setattr(uring, "open_ring", lambda entries=256: (None, "io_uring_setup failed (forbidden)"))
    plain = Store.open(tmp_path / "store")
    assert torch.equal(plain.read_batch(idx), expected) and plain.batch_reader == "preadv"
    assert plain.batch_reads == "auto"  # what was asked; batch_reader says what it got


def test_data_batch_reads_reaches_the_store_and_uring_without_io_uring_is_one_line(plugins, tmp_path, monkeypatch):
    """data.batch_reads: pread forces one preadv an image; uring where io_uring is not offered
    (seccomp, old kernel, not Linux) is a one-line ConfigError; a resumed run may change it."""
    from sslkit.data.store import pack, uring
    from sslkit.engine.rundir import resumed_config

    pack(_folder(tmp_path / "imgs", n=16, size=(8, 8)), tmp_path / "store", encoding="raw")
    config = _config(plugins, str(tmp_path / "store"), extra=["data.in_memory=false", "data.batch_reads=pread"])
    source = open_training_data(config.data, plugins)
    assert source.store.batch_reads == "pread" and source.store.batch_reader == "preadv"
    monkeypatch.setattr(uring, "open_ring", lambda entries=256: (None, "io_uring_setup failed (forbidden)"))
    config = _config(plugins, str(tmp_path / "store"), extra=["data.in_memory=false", "data.batch_reads=uring"])
    with pytest.raises(ConfigError) as err:
        open_training_data(config.data, plugins)
    line = str(err.value)
    assert "\n" not in line and "data.batch_reads=uring" in line and "forbidden" in line and "auto or pread" in line
    auto = _config(plugins, str(tmp_path / "store"), extra=["data.in_memory=false"])
    assert open_training_data(auto.data, plugins).store.batch_reader == "preadv"  # auto falls back
    resumed, _ = resumed_config(auto.model_dump(mode="json"), config)
    assert resumed.data.batch_reads == "uring"


def test_raw_in_process_batches_on_the_cpu_are_not_pinned_and_do_not_share_memory(tmp_path):
    from sslkit.data.store import Store, pack

    pack(_folder(tmp_path / "imgs", n=24, size=(8, 8)), tmp_path / "store", encoding="raw")
    source = StoreSource(Store.open(tmp_path / "store"))
    batches = [torch.arange(i, i + 8) for i in range(0, 24, 8)]
    got = [b.images for b in iterate_batches(source, batches, torch.device("cpu"), workers=0)]
    assert not any(x.is_pinned() for x in got)
    assert len({x.data_ptr() for x in got}) == 3  # each batch its own memory: a kept batch stays as read
    assert torch.equal(torch.cat(got), source.store.read_batch(np.arange(24)))


@pytest.mark.cuda  # skipped without a GPU (conftest); benchmarks/gpu_check.py runs it
def test_raw_in_process_batches_for_cuda_go_through_two_pinned_buffers(tmp_path):
    from sslkit.data.store import Store, pack

    pack(_folder(tmp_path / "imgs", n=40, size=(8, 8)), tmp_path / "store", encoding="raw")
    source = StoreSource(Store.open(tmp_path / "store"))
    batches = [torch.randperm(40, generator=torch.Generator().manual_seed(k))[:16] for k in range(6)]
    got = [b.images.cpu() for b in iterate_batches(source, batches, torch.device("cuda"), workers=0)]
    for x, idx in zip(got, batches, strict=True):  # buffers reused in turn never mix batches up
        assert torch.equal(x, source.store.read_batch(idx.numpy()))
