"""Tests for the procedurally generated sample dataset (sslkit.data.sample)."""

from __future__ import annotations

import numpy as np
import pytest

from sslkit.data.sample import SAMPLE_CLASSES, generate_sample

N_PER_CLASS = 20


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray, list[str]]:
    return generate_sample(N_PER_CLASS, seed=0)


def test_classes_constant() -> None:
    assert isinstance(SAMPLE_CLASSES, tuple)
    assert len(SAMPLE_CLASSES) == 10
    assert len(set(SAMPLE_CLASSES)) == 10
    assert all(isinstance(c, str) and c for c in SAMPLE_CLASSES)


def test_shapes_and_dtypes(sample: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    images, labels, names = sample
    n = 10 * N_PER_CLASS
    assert images.shape == (n, 3, 32, 32)
    assert images.dtype == np.uint8
    assert labels.shape == (n,)
    assert labels.dtype == np.int64
    assert names == list(SAMPLE_CLASSES)


def test_zero_per_class() -> None:
    images, labels, names = generate_sample(0, seed=0)
    assert images.shape == (0, 3, 32, 32) and labels.shape == (0,)
    assert len(names) == 10


def test_labels_balanced(sample: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    _, labels, _ = sample
    assert set(labels.tolist()) == set(range(10))
    assert np.all(np.bincount(labels, minlength=10) == N_PER_CLASS)


def test_deterministic() -> None:
    a_img, a_lab, _ = generate_sample(3, seed=123)
    b_img, b_lab, _ = generate_sample(3, seed=123)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)


def test_different_seed_differs() -> None:
    a_img, _, _ = generate_sample(3, seed=1)
    b_img, _, _ = generate_sample(3, seed=2)
    assert not np.array_equal(a_img, b_img)


def test_ignores_global_rng() -> None:
    np.random.seed(0)
    a_img, _, _ = generate_sample(2, seed=5)
    np.random.seed(999)
    np.random.rand(10)
    b_img, _, _ = generate_sample(2, seed=5)
    np.testing.assert_array_equal(a_img, b_img)


def test_images_not_blank(sample: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    images, _, _ = sample
    std = images.reshape(len(images), -1).astype(np.float64).std(axis=1)
    assert std.min() > 10.0


def test_images_vary_within_class(sample: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    images, labels, _ = sample
    for c in range(10):
        cls = images[labels == c].astype(np.float64)
        assert cls.std(axis=0).mean() > 5.0, SAMPLE_CLASSES[c]


def test_classes_differ_on_average(sample: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    # class-mean images should not all coincide: the classes have different layouts
    images, labels, _ = sample
    means = np.stack([images[labels == c].astype(np.float64).mean(0) for c in range(10)])
    flat = means.reshape(10, -1)
    dists = np.sqrt(((flat[:, None] - flat[None]) ** 2).mean(-1))
    assert dists[~np.eye(10, dtype=bool)].min() > 2.0


def _top_minus_bottom(images: np.ndarray) -> np.ndarray:
    """Per image: (brightness + blue) of the top half minus the bottom half."""
    x = images.astype(np.float64)
    score = x.mean(axis=1) + x[:, 2]  # brightness plus blue channel, [N, 32, 32]
    return score[:, :16].mean(axis=(1, 2)) - score[:, 16:].mean(axis=(1, 2))


def test_orientation_statistic(sample: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    images, _, _ = sample
    upright = _top_minus_bottom(images)
    flipped = _top_minus_bottom(np.rot90(images, k=2, axes=(2, 3)))
    # sky (light/blue) is on top for upright images; clearly so on average
    assert upright.mean() > 20.0
    assert flipped.mean() < -20.0
    # and the simple statistic alone gets most single images right
    assert (upright > 0).mean() > 0.8
