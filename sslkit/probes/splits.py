"""The labelled splits a probe sees: train, validation (for selection) and test (never selected on).

Gidaris et al. (ICLR 2018) report the best epoch measured on the CIFAR-10 test set (their
official code, github.com/gidariss/FeatureLearningRotNet); here the test split is only ever
evaluated once, after training, and a seeded validation split carved from the training images
is what selection may use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data.datasets import ImageData, carve_test, split_holdout
from ..data.opener import load_dataset
from ..errors import DataError, SSLKitError

if TYPE_CHECKING:
    from ..plugins import Plugins
    from .settings import ProbeSettings

log = logging.getLogger(__name__)


def first_k_per_class(labels: Tensor, k: int) -> Tensor:
    """Indices (ascending) of the first ``k`` images of each class, in dataset order (Figure 5b)."""
    order = torch.arange(labels.shape[0])
    keep = torch.zeros(labels.shape[0], dtype=torch.bool)
    for c in labels.unique().tolist():  # a loop over classes, not samples
        keep[order[labels == c][:k]] = True
    return order[keep]


@dataclass
class ProbeSplits:
    train: ImageData
    val: ImageData | None
    test: ImageData
    notes: dict[str, str]


def make_splits(
    train: ImageData,
    test: ImageData | None,
    *,
    val_fraction: float,
    test_fraction: float,
    labels_per_class: int | None,
    seed: int,
) -> ProbeSplits:
    """Carve a seeded test split when none is given, then a seeded validation split, then keep
    the first ``labels_per_class`` of each class of what is left (in dataset order)."""
    if train.labels is None:
        raise DataError(f"{train.description} has no labels; a probe needs class sub-folders (folder/<class>/*.jpg)")
    notes: dict[str, str] = {}
    if test is None:
        train, test = carve_test(train, test_fraction, seed)
        if test is None:
            raise DataError("no test data: pass --test-data PATH or a test fraction > 0")
        notes["test"] = (
            f"carved from the training data: a seeded {test_fraction:.0%} ({len(test)} images, seed {seed + 1000})"
        )
    else:
        notes["test"] = f"{test.description} ({len(test)} images)"
    if test.labels is None:
        raise DataError(f"{test.description} has no labels; the test data needs class sub-folders")
    if list(test.classes) != list(train.classes):
        raise DataError(
            f"{test.description} has classes {test.classes}, the training data {train.classes}; use matching folders"
        )
    train, val = split_holdout(train, val_fraction, seed + 2000)
    if val is not None:
        notes["validation"] = (
            f"carved from the training data: a seeded {val_fraction:.0%} ({len(val)} images, seed {seed + 2000})"
        )
    else:
        notes["validation"] = "none (val_fraction 0)"
    if labels_per_class is not None:
        assert train.labels is not None
        train = train.select(first_k_per_class(train.labels, labels_per_class))
        notes["labels"] = f"the first {labels_per_class} images per class of the training split ({len(train)} images)"
    return ProbeSplits(train, val, test, notes)


def load_splits(
    data: str, test_data: str | None, plugins: Plugins, settings: ProbeSettings, image_size: int | None = None
) -> ProbeSplits:
    """Training data by name or folder; test data from ``test_data``, else the dataset's ``test``
    split when it has one, else carved (seeded) from the training data."""
    train = load_dataset(data, plugins, "train", image_size)
    test: ImageData | None = None
    if test_data is not None:
        test = load_dataset(test_data, plugins, "test", image_size)
    elif data in plugins.datasets:
        try:
            test = load_dataset(data, plugins, "test", image_size)
        except SSLKitError as exc:  # a dataset without a test split: carve one below
            log.info("%s has no test split (%s); carving one", data, exc)
    return make_splits(
        train,
        test,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        labels_per_class=settings.labels_per_class,
        seed=settings.seed,
    )
