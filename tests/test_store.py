"""Packed stores: pack -> read round trips, bad files skipped, resume, refusal, corruption, workers."""

from __future__ import annotations

import json
import os
import pickle
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data.folders import load_folder
from sslkit.data.opener import load_dataset
from sslkit.data.store import Store, cached_store, pack, verify
from sslkit.errors import DataError


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
