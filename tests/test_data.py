"""Datasets (image folders, built-ins, caches, splits) and batched augmentation."""

from __future__ import annotations

import logging
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sslkit.data.folders as folders_mod
from sslkit.data.augment import normalize, random_crop_flip
from sslkit.data.builtin import load_cifar10
from sslkit.data.datasets import ImageData, data_root, split_holdout, take_subset
from sslkit.data.folders import load_folder
from sslkit.data.opener import load_dataset
from sslkit.errors import DataError
from sslkit.plugins import load_plugins

# --------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Caches go to tmp_path, never to the user's home; no plugin selection from the env."""
    monkeypatch.setenv("SSLKIT_DATA", str(tmp_path / "sslkit-data"))
    monkeypatch.delenv("SSLKIT_PLUGINS", raising=False)


@pytest.fixture
def no_network(monkeypatch):
    """Make any attempt to open a network connection fail loudly, before any packet is sent."""

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(selection="")


def _save(path: Path, size: tuple[int, int] = (8, 8), seed: int = 0) -> np.ndarray:
    """A random RGB PNG (lossless) of size (w, h); returns the [C, H, W] array."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr.transpose(2, 0, 1)


def _labelled_folder(root: Path, classes=("dog", "cat", "bird"), per_class: int = 3) -> dict[str, np.ndarray]:
    arrays = {}
    seed = 0
    for c in classes:
        for i in range(per_class):
            rel = f"{c}/img{i}.png"
            arrays[rel] = _save(root / rel, seed=seed)
            seed += 1
    return arrays


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- folders


def test_data_root_from_env(tmp_path):
    assert data_root() == tmp_path / "sslkit-data"


def test_folder_labels_from_class_subfolders(tmp_path):
    root = tmp_path / "imgs"
    arrays = _labelled_folder(root)
    data = load_folder(root, cache_dir=tmp_path / "cache")
    assert data.classes == ["bird", "cat", "dog"]  # sorted class names
    assert data.images.shape == (9, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert len(data.files) == 9
    for i, rel in enumerate(data.files):
        assert data.classes[int(data.labels[i])] == rel.split("/")[0]
        assert torch.equal(data.images[i], torch.from_numpy(arrays[rel]))
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_folder_without_subfolders_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        _save(root / f"{i}.png", seed=i)
    data = load_folder(root, cache_dir=tmp_path / "cache")
    assert data.labels is None
    assert data.classes == []
    assert len(data) == 4


def test_mixed_flat_and_subfolders_is_unlabelled(tmp_path):
    root = tmp_path / "mixed"
    _save(root / "a.png")
    _save(root / "cls" / "b.png", seed=1)
    data = load_folder(root, cache_dir=tmp_path / "cache")
    assert data.labels is None and len(data) == 2


def test_corrupt_file_is_skipped_with_one_warning(tmp_path, caplog):
    root = tmp_path / "imgs"
    _labelled_folder(root, classes=("a", "b"), per_class=2)
    (root / "a" / "x.jpg").write_bytes(np.random.default_rng(0).bytes(200))
    caplog.set_level(logging.WARNING)
    data = load_folder(root, cache_dir=tmp_path / "cache")
    assert len(data) == 4
    assert "a/x.jpg" not in data.files
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "x.jpg" in warnings[0]
    assert "1 unreadable" in warnings[0]


def test_folder_without_images(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as info:
        load_folder(root, cache_dir=tmp_path / "cache")
    assert "no images" in str(info.value)
    assert "\n" not in str(info.value)


def test_folder_with_only_unreadable_images(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError):
        load_folder(root, cache_dir=tmp_path / "cache")


def test_load_dataset_unknown_name(tmp_path, monkeypatch, plugins):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("nowhere/at/all", plugins)
    msg = str(info.value)
    assert "nowhere/at/all" in msg
    assert "cifar10" in msg and "sample" in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match="did you mean 'sample'"):
        load_dataset("sampel", plugins)


def test_load_dataset_file_is_not_a_folder(tmp_path, plugins):
    path = tmp_path / "one.png"
    _save(path)
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(str(path), plugins)


def test_load_dataset_folder(tmp_path, plugins):
    root = tmp_path / "imgs"
    _labelled_folder(root, per_class=2)
    data = load_dataset(str(root), plugins)
    assert len(data) == 6 and data.classes == ["bird", "cat", "dog"]
    assert list((tmp_path / "sslkit-data" / "folders").glob("*.pt"))  # cached under SSLKIT_DATA


def test_mixed_sizes_train_at_the_most_common_square_size_or_ask(tmp_path, plugins, caplog):
    """A folder of mixed sizes trains at its most common size when that is square (one warning
    says so; the rest resized and centre-cropped), and asks for data.image_size otherwise."""
    root = tmp_path / "sizes"
    _save(root / "a.png", size=(8, 8))
    _save(root / "b.png", size=(8, 8), seed=1)
    _save(root / "c.png", size=(12, 10), seed=2)
    with caplog.at_level("WARNING"):
        data = load_folder(root, cache_dir=tmp_path / "cache")
    assert data.images.shape == (3, 3, 8, 8)
    assert "training at 8x8, the most common" in caplog.text and "data.image_size" in caplog.text
    data = load_folder(root, image_size=16, cache_dir=tmp_path / "cache")
    assert data.images.shape == (3, 3, 16, 16)
    data = load_dataset(str(root), plugins, image_size=16)
    assert data.images.shape == (3, 3, 16, 16)
    wide = tmp_path / "wide"
    _save(wide / "a.png", size=(12, 10))
    _save(wide / "b.png", size=(12, 10), seed=1)
    _save(wide / "c.png", size=(8, 8), seed=2)
    with pytest.raises(DataError) as info:
        load_folder(wide, cache_dir=tmp_path / "cache")
    assert "not square" in str(info.value) and "data.image_size" in str(info.value) and "\n" not in str(info.value)


def test_decode_cache(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    _labelled_folder(root, per_class=2)
    cache_dir = tmp_path / "cache"
    first = load_folder(root, cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(folders_mod, "_decode", no_decoding)
    second = load_folder(root, cache_dir=cache_dir)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)
    assert first.classes == second.classes and first.files == second.files


def test_decode_cache_under_sslkit_data(tmp_path, monkeypatch):
    root = tmp_path / "flat"
    for i in range(3):
        _save(root / f"{i}.png", seed=i)
    first = load_folder(root)
    cached = list((tmp_path / "sslkit-data" / "folders").glob("*.pt"))
    assert len(cached) == 1
    monkeypatch.setattr(folders_mod, "_decode", lambda *a, **k: pytest.fail("decoded again"))
    second = load_folder(root)
    assert torch.equal(first.images, second.images)
    assert second.labels is None


def test_decode_cache_invalidated_by_changes(tmp_path):
    root = tmp_path / "imgs"
    _labelled_folder(root, per_class=2)
    cache_dir = tmp_path / "cache"
    first = load_folder(root, cache_dir=cache_dir)
    _save(root / "cat" / "new.png", seed=99)
    second = load_folder(root, cache_dir=cache_dir)
    assert len(second) == len(first) + 1
    resized = load_folder(root, image_size=8, cache_dir=cache_dir)  # another key, same pixels
    assert torch.equal(resized.images, second.images)
    assert len(list(cache_dir.glob("*.pt"))) == 3


def test_corrupt_cache_is_rebuilt(tmp_path, caplog):
    root = tmp_path / "imgs"
    _labelled_folder(root, per_class=1)
    cache_dir = tmp_path / "cache"
    first = load_folder(root, cache_dir=cache_dir)
    (cache_file,) = cache_dir.glob("*.pt")
    cache_file.write_bytes(b"garbage")
    caplog.set_level(logging.WARNING)
    second = load_folder(root, cache_dir=cache_dir)
    assert torch.equal(first.images, second.images)
    assert any("cache" in w for w in _warnings(caplog))


# --------------------------------------------------------------------------- splits


def _numbered(n: int, labelled: bool = True) -> ImageData:
    images = (
        torch.arange(n, dtype=torch.int64)
        .remainder(256)
        .to(torch.uint8)
        .view(n, 1, 1, 1)
        .expand(n, 1, 2, 2)
        .contiguous()
    )
    labels = torch.arange(n) % 3 if labelled else None
    return ImageData(images, labels, ["a", "b", "c"], "numbered", files=[f"f{i}" for i in range(n)])


def test_split_holdout_deterministic_and_disjoint():
    data = _numbered(200)
    train, hold = split_holdout(data, 0.1, seed=5)
    assert hold is not None
    assert len(train) == 180 and len(hold) == 20
    a = set(train.files)
    b = set(hold.files)
    assert not a & b
    assert a | b == set(data.files)
    # labels and images travel with their files
    for part in (train, hold):
        idx = torch.tensor([int(f[1:]) for f in part.files])
        assert torch.equal(part.labels, data.labels[idx])
        assert torch.equal(part.images, data.images[idx])
    train2, hold2 = split_holdout(data, 0.1, seed=5)
    assert train2.files == train.files and hold2.files == hold.files
    _, hold3 = split_holdout(data, 0.1, seed=6)
    assert hold3.files != hold.files


def test_split_holdout_zero():
    data = _numbered(10)
    train, hold = split_holdout(data, 0.0, seed=0)
    assert hold is None and train is data


def test_split_holdout_too_few():
    with pytest.raises(DataError):
        split_holdout(_numbered(1), 0.99, seed=0)


def test_take_subset_deterministic():
    data = _numbered(100)
    sub = take_subset(data, 30, seed=1)
    assert len(sub) == 30
    assert len(set(sub.files)) == 30
    assert set(sub.files) <= set(data.files)
    assert take_subset(data, 30, seed=1).files == sub.files
    assert take_subset(data, 30, seed=2).files != sub.files
    assert take_subset(data, None, seed=0) is data
    assert take_subset(data, 1000, seed=0) is data


def test_subset_of_train_is_disjoint_from_holdout():
    data = _numbered(120, labelled=False)
    train, hold = split_holdout(data, 0.25, seed=0)
    sub = take_subset(train, 40, seed=0)
    assert not set(sub.files) & set(hold.files)
    assert sub.labels is None


# --------------------------------------------------------------------------- augmentation


def test_crop_flip_shape_and_dtype():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 12, 10), dtype=torch.uint8, generator=g)
    out = random_crop_flip(x, padding=4, flip=True, generator=g)
    assert out.shape == x.shape and out.dtype == x.dtype
    xf = x.float()
    assert random_crop_flip(xf, padding=2, flip=True, generator=g).shape == xf.shape


def test_crop_flip_identity_without_padding_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=g)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False, generator=g), x)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("padding", [1, 4])
def test_crop_matches_brute_force(padding, flip):
    b, c, h, w = 64, 3, 8, 6
    x = torch.randint(1, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = random_crop_flip(x, padding=padding, flip=flip, generator=torch.Generator().manual_seed(7))
    # Re-draw the same random numbers, in the same order, and crop per sample.
    g = torch.Generator().manual_seed(7)
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=g)
    mask = torch.rand(b, generator=g) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    padded = torch.zeros(b, c, h + 2 * padding, w + 2 * padding, dtype=x.dtype)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    for i in range(b):
        y0, x0 = int(oy[i]), int(ox[i])
        window = padded[i, :, y0 : y0 + h, x0 : x0 + w]
        if mask[i]:
            window = window.flip(-1)
        assert torch.equal(out[i], window), i
    # the draws do move the window around (not always the centre)
    assert len(set(zip(oy.tolist(), ox.tolist(), strict=True))) > 1


def test_crop_is_a_shifted_window_of_padded_input():
    """Without re-drawing: every output equals some window of the zero-padded input."""
    p, b, h, w = 2, 32, 6, 6
    x = torch.randint(1, 256, (b, 1, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    out = random_crop_flip(x, padding=p, flip=False, generator=torch.Generator().manual_seed(4))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(b):
        found = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + h, dx : dx + w])
        ]
        assert found, i
        offsets.add(found[0])
    assert len(offsets) > 3


def test_flip_frequency_about_half():
    n = 4000
    x = torch.arange(2, dtype=torch.uint8).view(1, 1, 1, 2).expand(n, 1, 1, 2).contiguous()
    out = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0] == 1
    assert torch.equal(out[flipped], x[flipped].flip(-1))
    assert torch.equal(out[~flipped], x[~flipped])
    assert 0.45 < flipped.float().mean().item() < 0.55


def test_crop_flip_deterministic_for_a_seed():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = random_crop_flip(x, 4, True, torch.Generator().manual_seed(9))
    b = random_crop_flip(x, 4, True, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_normalize_formula():
    x = torch.randint(0, 256, (3, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32 and out.shape == x.shape
    expected = torch.empty_like(out)
    for ch in range(3):
        expected[:, ch] = (x[:, ch].double() / 255 - mean[ch]) / std[ch]
    assert torch.allclose(out, expected, atol=1e-5)
    assert x.dtype == torch.uint8  # input untouched


def test_image_stats():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 1] = 255
    data = ImageData(images, None, [], "stats")
    mean, std = data.stats()
    assert mean == pytest.approx((0.0, 1.0, 0.0))
    assert std == pytest.approx((0.0, 0.0, 0.0))
    data = ImageData(images, None, [], "stats", mean=(0.5,) * 3, std=(0.25,) * 3)
    assert data.stats() == ((0.5,) * 3, (0.25,) * 3)


def test_image_data_rejects_float():
    with pytest.raises(DataError):
        ImageData(torch.zeros(1, 3, 2, 2), None, [], "floats")


# --------------------------------------------------------------------------- built-in datasets


def test_cifar10_offline_error(tmp_path, monkeypatch, no_network):
    import torchvision.datasets

    calls = []

    class OfflineCIFAR10:
        def __init__(self, root, train=True, download=False, **kwargs):
            calls.append((root, train, download))
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(DataError) as info:
        load_cifar10("train", tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "SSLKIT_DATA" in msg and "--data" in msg
    assert "cifar-10-batches-py" in msg
    assert str(tmp_path / "cifar10") in msg
    assert "URLError" in msg
    assert calls == [(str(tmp_path / "cifar10"), True, True)]


def test_cifar10_offline_real_torchvision(tmp_path, no_network, plugins):
    """The real torchvision code path, with every connection refused: still a DataError."""
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", plugins, split="test")
    msg = str(info.value)
    assert "SSLKIT_DATA" in msg and "--data" in msg
    assert str(tmp_path / "sslkit-data" / "cifar10") in msg


def test_cifar10_bad_split(tmp_path):
    with pytest.raises(DataError, match="split"):
        load_cifar10("val", tmp_path)


def test_sample_dataset_and_cache(tmp_path, monkeypatch, plugins):
    data = load_dataset("sample", plugins)
    assert data.images.shape == (6000, 3, 32, 32)
    assert data.images.dtype == torch.uint8
    assert data.labels is not None and data.labels.shape == (6000,)
    assert len(data.classes) == 10
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    cache = tmp_path / "sslkit-data" / "sample-v1-train.pt"
    assert cache.is_file()

    import sslkit.data.sample as sample_mod

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(sample_mod, "generate_sample", no_generation)
    again = load_dataset("sample", plugins)
    assert torch.equal(again.images, data.images)
    assert torch.equal(again.labels, data.labels)
    assert again.classes == data.classes


def test_sample_cache_on_a_full_disk_leaves_no_temporary(tmp_path, monkeypatch, caplog):
    """The sample cache goes through files.atomic_write: a failed write leaves nothing behind."""
    from sslkit.data import builtin

    monkeypatch.setitem(builtin.SAMPLE_SIZES, "test", 2)  # 2 images a class: quick to generate

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    root = tmp_path / "root"
    with caplog.at_level(logging.WARNING):
        data = builtin.load_sample("test", root)
    assert len(data) == 20 and "could not cache the sample data" in caplog.text
    assert list(root.iterdir()) == [], list(root.iterdir())
