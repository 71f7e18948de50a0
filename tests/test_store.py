"""Packed stores: pack -> read round trips, bad files skipped, resume, refusal, corruption, workers."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data.folders import load_folder
from sslkit.data.opener import load_dataset
from sslkit.data.store import Store, cached_store, pack, verify
from sslkit.errors import ConfigError, DataError


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def _small_folder(root, n_per_class=6, size=(16, 12), classes=("cat", "dog"), fmt="png"):
    """Class sub-folders of seeded random images (PNG: lossless, so pixels compare exactly)."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i:03d}.{fmt}")
    return root


@pytest.fixture
def small(tmp_path):
    return _small_folder(tmp_path / "small")


def test_raw_store_equals_load_folder(small, tmp_path):
    manifest = pack(small, tmp_path / "store", workers=0)
    assert manifest["encoding"] == "raw" and manifest["images"] == 12 and manifest["skipped_count"] == 0
    store = Store.open(tmp_path / "store")
    reference = load_folder(small, cache_dir=tmp_path / "cache")
    assert store.files == reference.files and store.classes == reference.classes
    assert torch.equal(torch.from_numpy(store.labels), reference.labels)
    assert store.uniform_size == (12, 16) and store.sizes.tolist() == [[12, 16]] * 12
    data = store.to_imagedata()
    assert torch.equal(data.images, reference.images)
    assert torch.equal(torch.stack([store.read(i) for i in range(len(store))]), reference.images)
    x = reference.images.double().div(255).transpose(0, 1).flatten(1)
    assert np.allclose(store.mean, x.mean(1).numpy(), atol=1e-9)
    assert np.allclose(store.std, x.std(1, correction=0).numpy(), atol=1e-9)
    assert store.description == f"store '{tmp_path / 'store'}' (12 images, raw 16x12)"


def _mixed_folder(root):
    """Mixed sizes and modes plus every kind of bad file; returns the expected skip reasons."""
    rng = np.random.default_rng(1)
    root.mkdir()
    sizes = [(40, 30), (64, 48), (300, 200), (640, 480), (100, 333)]
    for i, (w, h) in enumerate(sizes):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / f"a{i}.jpg", quality=90)
        Image.fromarray(rgb).save(root / f"b{i}.png")
    Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8), "L").save(root / "gray.png")
    Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA").save(root / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).convert("P").save(root / "palette.gif")
    good = (root / "a3.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not an image")
    (root / "loop").symlink_to(root, target_is_directory=True)  # walked once, not forever
    expected = {"zero.jpg": "empty file", "text.jpg": "not an image", "truncated.jpg": "corrupt or truncated"}
    secret = root / "secret.png"
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(secret)
    secret.chmod(0)
    if not os.access(secret, os.R_OK):  # root reads it anyway: then it is a good image
        expected["secret.png"] = "permission denied"
    return expected


def test_mixed_collection_packs_and_counts_bad_files(tmp_path):
    expected = _mixed_folder(tmp_path / "mixed")
    seen = []
    manifest = pack(tmp_path / "mixed", tmp_path / "store", workers=2, on_progress=lambda d, t: seen.append((d, t)))
    reasons = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == set(expected) and manifest["skipped_count"] == len(expected)
    assert all(reasons[f].startswith(r) for f, r in expected.items()), reasons
    n_good = 13 + (0 if "secret.png" in expected else 1)
    assert manifest["images"] == n_good and manifest["encoding"] == "jpeg" and seen[-1] == (n_good + len(expected),) * 2
    store = Store.open(tmp_path / "store")
    assert store.uniform_size is None and store.labels is None
    assert store.sizes.tolist()[store.files.index("a3.jpg")] == [480, 640]
    for i in range(len(store)):
        image = store.read(i)
        assert image.dtype == torch.uint8 and list(image.shape) == [3, *store.sizes[i].tolist()]
    with pytest.raises(DataError) as err:
        store.to_imagedata()
    assert "cannot be one tensor" in _one_line(err)


def test_max_side_caps_the_short_side(tmp_path):
    _mixed_folder(tmp_path / "mixed")
    pack(tmp_path / "mixed", tmp_path / "store", max_side=32, encoding="raw", workers=0)
    store = Store.open(tmp_path / "store")
    i = store.files.index("a4.jpg")  # 100 x 333 -> 32 x 107
    assert store.sizes[i].tolist() == [107, 32] and tuple(store.read(i).shape) == (3, 107, 32)
    assert (store.sizes.min(1) <= 32).all()


class _Killed(Exception):
    pass


def _kill_at_first_progress(done, total):
    raise _Killed


def test_interrupted_pack_resumes_to_the_same_store(tmp_path):
    folder = _small_folder(tmp_path / "many", n_per_class=80, size=(8, 8))
    options = dict(shard_size=32 << 10, workers=0)
    with pytest.raises(_Killed):  # worker processes running: they are stopped, nothing half-written stays
        pack(folder, tmp_path / "store", on_progress=_kill_at_first_progress, shard_size=32 << 10, workers=2)
    state = json.loads((tmp_path / "store" / ".pack-state.json").read_text())
    assert len(state["shards"]) > 0 and 0 < state["consumed"] < 160
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(DataError) as err:
        Store.open(tmp_path / "store")
    assert "unfinished pack" in _one_line(err)
    seen = []
    resumed = pack(folder, tmp_path / "store", on_progress=lambda d, t: seen.append(d), **options)
    assert seen[0] > state["consumed"]  # continued, did not start over
    clean = pack(folder, tmp_path / "clean", **options)
    assert resumed["shards"] == clean["shards"] and resumed["meta"] == clean["meta"]
    assert Store.open(tmp_path / "store").fingerprint == Store.open(tmp_path / "clean").fingerprint
    assert pack(folder, tmp_path / "store", **options)["created"] == resumed["created"]  # finished: reused


def test_foreign_non_empty_folder_is_refused(small, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DataError) as err:
        pack(small, tmp_path / "busy", workers=0)
    assert "is not empty" in _one_line(err)
    pack(small, tmp_path / "store", workers=0)
    with pytest.raises(DataError) as err:  # a finished store of other options
        pack(small, tmp_path / "store", workers=0, encoding="jpeg")
    assert "is not empty" in _one_line(err)


def test_concurrent_packers_of_one_folder_do_not_collide(small, tmp_path):
    results: list = []

    def run():
        results.append(pack(small, tmp_path / "store", workers=0))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert verify(tmp_path / "store")["images"] == 12


def _shard_of(store_path, i=0):
    return store_path / Store.open(store_path).manifest["shards"][i]["name"]


def test_truncated_shard_is_a_one_line_error(small, tmp_path):
    pack(small, tmp_path / "store", workers=0)
    shard = _shard_of(tmp_path / "store")
    shard.write_bytes(shard.read_bytes()[:5000])
    store = Store.open(tmp_path / "store")
    with pytest.raises(DataError) as err:
        store.read(11)
    line = _one_line(err)
    assert shard.name in line and "sslkit data verify" in line
    with pytest.raises(DataError) as err:
        verify(tmp_path / "store")
    assert shard.name in _one_line(err) and "truncated" in str(err.value)


def test_verify_catches_a_flipped_byte(small, tmp_path):
    pack(small, tmp_path / "store", workers=0)
    assert verify(tmp_path / "store")["images"] == 12
    shard = _shard_of(tmp_path / "store")
    data = bytearray(shard.read_bytes())
    data[Store.open(tmp_path / "store").index[3, 1] + 200] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        verify(tmp_path / "store")
    assert shard.name in _one_line(err) and "sha256" in str(err.value)


class _Images(torch.utils.data.Dataset):
    def __init__(self, store):
        self.store = store

    def __len__(self):
        return len(self.store)

    def __getitem__(self, i):
        return self.store.read(i), int(self.store.labels[i])


def test_store_goes_to_dataloader_workers(small, tmp_path):
    pack(small, tmp_path / "store", workers=0)
    store = Store.open(tmp_path / "store")
    store.read(0)  # an open descriptor must not travel
    clone = pickle.loads(pickle.dumps(store))
    assert clone._fds == {} and torch.equal(clone.read(5), store.read(5))
    loader = torch.utils.data.DataLoader(_Images(store), batch_size=5, num_workers=2)
    images, labels = map(torch.cat, zip(*loader, strict=True))
    assert torch.equal(images, store.to_imagedata().images) and labels.tolist() == store.labels.tolist()


def test_missing_and_foreign_paths_are_one_line_errors(tmp_path):
    for path, words in ((tmp_path / "nope", "does not exist"), (tmp_path, "not a packed store")):
        with pytest.raises(DataError) as err:
            Store.open(path)
        assert words in _one_line(err)


def test_list_file_with_labels(small, tmp_path):
    lines = [f"{c}/{i:03d}.png\t{'odd' if i % 2 else 'even'}" for c in ("dog", "cat") for i in range(3)]
    (small / "list.txt").write_text("\n".join(lines) + "\n")
    pack(small / "list.txt", tmp_path / "store", workers=0)
    store = Store.open(tmp_path / "store")
    assert store.classes == ["even", "odd"] and store.labels.tolist() == [0, 1, 0, 0, 1, 0]
    assert store.files == [line.split("\t")[0] for line in lines]


def test_registered_dataset_packs_raw(tmp_path, plugins):
    manifest = pack("sample", tmp_path / "store", shard_size=4 << 20, plugins=plugins)
    data = load_dataset("sample", plugins)
    store = Store.open(tmp_path / "store")
    assert manifest["encoding"] == "raw" and len(store) == len(data) and store.classes == data.classes
    for i in (0, 1234, len(data) - 1):
        assert torch.equal(store.read(i), data.images[i])
    assert torch.equal(torch.from_numpy(store.labels), data.labels)


def test_cached_store_packs_once_and_follows_changes(small):
    calls = []
    first = cached_store(small, on_progress=lambda d, t: calls.append(d))
    assert calls and len(first) == 12
    calls.clear()
    again = cached_store(small, on_progress=lambda d, t: calls.append(d))
    assert again.path == first.path and not calls
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(small / "cat" / "new.png")
    changed = cached_store(small)
    assert changed.path != first.path and len(changed) == 13


def test_webdataset_reads_the_shards(small, tmp_path):
    wds = pytest.importorskip("webdataset")
    pack(small, tmp_path / "raw", workers=0)
    _mixed_folder(tmp_path / "mixed")
    pack(tmp_path / "mixed", tmp_path / "jpeg", workers=0, encoding="jpeg")
    for name, ext in (("raw", "npy"), ("jpeg", "jpg")):
        store = Store.open(tmp_path / name)
        urls = [str(tmp_path / name / s["name"]) for s in store.manifest["shards"]]
        samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8"))
        assert len(samples) == len(store)
        for i, sample in enumerate(samples):
            assert (
                np.array_equal(sample[ext], store.read(i).permute(1, 2, 0).numpy())
                if ext == "npy"
                else sample[ext].shape == tuple(store.sizes[i]) + (3,)
            )
            assert ("cls" in sample) == (store.labels is not None)
            if store.labels is not None:
                assert sample["cls"] == store.labels[i]


@pytest.mark.cuda  # skipped without a GPU (conftest); benchmarks/gpu_check.py runs it
def test_decode_gpu_matches_cpu(tmp_path):
    _mixed_folder(tmp_path / "mixed")
    pack(tmp_path / "mixed", tmp_path / "store", workers=0, encoding="jpeg")
    store = Store.open(tmp_path / "store")
    payloads = [store.read_bytes(i) for i in range(len(store))]
    for gpu, i in zip(Store.decode_gpu(payloads, "cuda"), range(len(store)), strict=True):
        cpu = store.read(i)
        assert gpu.shape == cpu.shape and (gpu.cpu().int() - cpu.int()).abs().float().mean() < 2


def _fake_imagenet(root, val="csv"):
    """3 wnids x 2 train images; val flat with Kaggle's CSV, flat with the devkit files, or in folders."""
    rng = np.random.default_rng(2)
    wnids = ["n01440764", "n01443537", "n01484850"]
    base = root / "imagenet"
    for w in wnids:
        (base / "train" / w).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (300 + 10 * i, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "train" / w / f"{w}_{i}.JPEG")
    (base / "val").mkdir()
    truth = [2, 0, 1, 2]  # wnid index of val image k
    for k, t in enumerate(truth, 1):
        name = f"ILSVRC2012_val_{k:08d}.JPEG"
        folder = base / "val" / wnids[t] if val == "folders" else base / "val"
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)).save(folder / name)
    if val == "csv":
        rows = [f"ILSVRC2012_val_{k:08d},{wnids[t]} 1 2 30 40" for k, t in enumerate(truth, 1)]
        (base / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    if val == "devkit":  # the devkit numbers classes by ILSVRC2012_ID, not by sorted wnid
        from scipy.io import savemat

        ids = {w: i for i, w in zip((7, 3, 5), wnids, strict=True)}
        synsets = np.array([(ids[w], w) for w in wnids], dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
        savemat(base / "val" / "meta.mat", {"synsets": synsets})
        (base / "val" / "ILSVRC2012_validation_ground_truth.txt").write_text(
            "".join(f"{ids[wnids[t]]}\n" for t in truth)
        )
    return wnids, truth


@pytest.mark.parametrize("val", ["csv", "folders", "devkit"])
def test_imagenet_reads_a_local_copy(tmp_path, val):
    if val == "devkit":
        pytest.importorskip("scipy")
    from sslkit.data.imagenet import load_imagenet

    wnids, truth = _fake_imagenet(tmp_path, val)
    train = load_imagenet("train", tmp_path)
    assert isinstance(train, Store) and train.classes == wnids and train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.encoding == "jpeg" and train.sizes.min() == 256  # short side capped at 256
    test = load_imagenet("test", tmp_path)
    assert test.classes == wnids and test.labels.tolist() == (sorted(truth) if val == "folders" else truth)
    assert load_imagenet("train", tmp_path).path == train.path  # packed once


def test_imagenet_missing_says_where_to_put_it(tmp_path, plugins):
    from sslkit.data.imagenet import load_imagenet

    with pytest.raises(DataError) as err:
        load_imagenet("train", tmp_path)
    line = _one_line(err)
    assert str(tmp_path / "imagenet" / "train") in line and "image-net.org" in line
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imagenet" / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError) as err:
        load_imagenet("test", tmp_path)
    assert "LOC_val_solution.csv" in _one_line(err)
    assert "imagenet" in plugins.datasets.names()


def test_resume_with_a_lost_shard_is_a_one_line_error(tmp_path):
    folder = _small_folder(tmp_path / "many", n_per_class=80, size=(8, 8))
    with pytest.raises(_Killed):
        pack(folder, tmp_path / "store", shard_size=32 << 10, workers=0, on_progress=_kill_at_first_progress)
    (tmp_path / "store" / "shard-000000.tar").unlink()
    with pytest.raises(DataError) as err:
        pack(folder, tmp_path / "store", shard_size=32 << 10, workers=0)
    assert "shard-000000.tar is missing or changed" in _one_line(err)


# -- integrity, batch reads, worker life cycle -----------------------------------------------------
def test_batch_checksums_equal_the_single_checksum_and_catch_changes():
    from sslkit.data.store import format as fmt

    rng = np.random.default_rng(0)
    for step in (3072, 300, 192, 128, 7):  # whole 128-byte blocks, and zero-padded tails
        rows = rng.integers(0, 256, (9, step), dtype=np.uint8)
        assert fmt.batch_checksums(rows).tolist() == [fmt.checksum(r.tobytes()) for r in rows]
    row = rng.integers(0, 256, 3072, dtype=np.uint8)
    base = fmt.checksum(row)
    for change in ({100: 1}, {0: 255}, {3071: 7}):  # one byte anywhere
        damaged = row.copy()
        for k, v in change.items():
            damaged[k] ^= v
        assert fmt.checksum(damaged) != base
    words = row.view("<u8").copy()
    words[[3, 4]] = words[[4, 3]]  # two neighbouring 8-byte words swapped
    assert fmt.checksum(words.view(np.uint8)) != base


def _as_format_1(path):
    """Rewrite a store as the previous format wrote it: no checksum column, format 1 manifest."""
    from sslkit.data.store import format as fmt

    index = np.load(path / "index.npy")[:, :6]
    with open(path / "index.npy", "wb") as f:
        np.save(f, index)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format"] = "sslkit.store/1"
    manifest["meta"]["index.npy"] = fmt.sha256_file(path / "index.npy")
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_format_1_store_reads_with_one_warning_and_a_checked_index(small, tmp_path, caplog):
    pack(small, tmp_path / "store", workers=0)
    expected = Store.open(tmp_path / "store").to_imagedata().images
    _as_format_1(tmp_path / "store")
    with caplog.at_level("WARNING"):
        old = Store.open(tmp_path / "store")
        assert torch.equal(old.to_imagedata().images, expected) and torch.equal(old.read(3), expected[3])
        assert torch.equal(old.read_batch([5, 1]), expected[[5, 1]])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no checksums" in warnings[0] and "sslkit data pack" in warnings[0]
    index = np.load(tmp_path / "store" / "index.npy")
    index[0, 3] = 1 - index[0, 3]
    with open(tmp_path / "store" / "index.npy", "wb") as f:
        np.save(f, index)
    with pytest.raises(DataError) as err:
        Store.open(tmp_path / "store")
    assert "index.npy fails its sha256 check" in _one_line(err)


def test_read_batch_reads_into_a_given_buffer(small, tmp_path):
    pack(small, tmp_path / "store", workers=0)
    store = Store.open(tmp_path / "store")
    buffer = torch.zeros((8, 12, 16, 3), dtype=torch.uint8)
    got = store.read_batch([3, 0, 7], out=buffer)
    assert got.data_ptr() == buffer.data_ptr() and got.shape == (3, 3, 12, 16)
    assert torch.equal(got, torch.stack([store.read(i) for i in (3, 0, 7)]))
    with pytest.raises(ValueError, match="cannot hold"):
        store.read_batch(list(range(9)), out=buffer)
    store.use_batch_reads("pread")  # closes the ring it read with (its maps, then its descriptor)
    assert store.batch_reader == "preadv" and torch.equal(store.read_batch([3, 0, 7]), got)


def test_pad_images_is_the_padding_of_each_image():
    from sslkit.data.batches import pad_images

    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in ((5, 7), (9, 2), (4, 4))]
    padded, sizes = pad_images(images)
    assert padded.shape == (3, 3, 9, 7) and sizes.tolist() == [[5, 7], [9, 2], [4, 4]]
    for im, out in zip(images, padded, strict=True):
        assert torch.equal(out[:, : im.shape[1], : im.shape[2]], im)
        assert int(out.sum()) == int(im.sum())  # zeros everywhere else
    same, _ = pad_images(images[:1] * 2)
    assert torch.equal(same, torch.stack(images[:1] * 2))


def test_decode_gpu_raw_payloads_on_the_cpu_equal_read(small, tmp_path):
    pack(small, tmp_path / "store", workers=0)
    store = Store.open(tmp_path / "store")
    decoded = Store.decode_gpu([store.read_bytes(i) for i in (2, 9)], "cpu")
    assert all(torch.equal(d, store.read(i)) for d, i in zip(decoded, (2, 9), strict=True))


def test_a_finished_pack_leaves_no_lock_file(small, tmp_path):
    pack(small, tmp_path / "store", workers=0)
    names = {p.name for p in (tmp_path / "store").iterdir()}
    assert not {".lock", ".pack.lock"} & names, names


def _children(pid):
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in __import__("glob").glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc")
def test_killed_pack_leaves_no_worker_behind(small, tmp_path):
    """SIGKILL on a pack whose worker is blocked (on a FIFO that nobody writes): every process it
    started (the workers, and a resource tracker where one runs) goes with it; they used to stay."""
    import signal
    import subprocess
    import sys
    import time

    os.mkfifo(small / "cat" / "zz-blocks.png")  # opening it blocks the worker that reads it
    code = (
        f"from sslkit.data.store import pack; pack({str(small)!r}, {str(tmp_path / 's')!r}, encoding='raw', workers=2)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(children) < 2 and time.monotonic() < deadline:  # the 2 workers (and the resource tracker)
            time.sleep(0.2)
            children = _children(proc.pid)
        assert len(children) >= 2 and proc.poll() is None, children
        time.sleep(2)  # the workers have run their initializer and one is blocked in open()
        children = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [c for c in children if _alive(c)], children
    finally:
        for c in children:  # only the processes this test started
            if _alive(c):
                os.kill(c, signal.SIGKILL)


def test_io_uring_structures_have_the_kernel_layout_and_untested_arches_use_preadv(monkeypatch):
    from sslkit.data.store import uring

    sqe = uring._SQE
    assert sqe.itemsize == 64 and [sqe.fields[k][1] for k in ("fd", "off", "addr", "len", "user_data")] == [
        4,
        8,
        16,
        24,
        32,
    ]
    assert uring.IoUringParams.sq_off.offset == 40 and uring.IoUringParams.cq_off.offset == 80
    assert uring.IoSqringOffsets.array.offset == 24 and uring.IoCqringOffsets.cqes.offset == 20
    monkeypatch.setattr(uring.platform, "machine", lambda: "aarch64")
    ring, why = uring.open_ring()
    assert ring is None and "x86-64" in why
    assert uring.BatchReads("auto").kind == "preadv"
    with pytest.raises(ConfigError) as err:
        uring.BatchReads("uring")
    assert "data.batch_reads=uring" in _one_line(err)
