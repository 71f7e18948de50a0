"""The ``imagenet`` dataset: a local ILSVRC-2012 copy, packed once into a store (it cannot be downloaded).

Layout under ``$SSLKIT_DATA/imagenet`` (Russakovsky et al., IJCV 2015):

- ``train/<wnid>/*.JPEG``;
- ``val/`` either in ``<wnid>`` sub-folders, or flat (``ILSVRC2012_val_00000001.JPEG`` ...) with
  its labels in Kaggle's ``LOC_val_solution.csv`` or in the devkit's
  ``ILSVRC2012_validation_ground_truth.txt`` plus ``meta.mat`` (that file's class numbers are
  ILSVRC2012_IDs, which only ``meta.mat`` maps to wnids).

Labels are indices into the sorted train wnids (torchvision's ``ImageNet`` order), for both splits.
Images are packed as JPEG with the short side capped at 256 px, the resize the usual ImageNet
recipe does first (resize 256, crop 224), so training never decodes a full-size photo.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from ..files import walk_images
from .store.sources import Source, labelled_files

MAX_SIDE = 256
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
SOLUTION = "LOC_val_solution.csv"
WHERE = (
    "put ILSVRC-2012 from image-net.org there (train/<wnid>/*.JPEG; val/ in <wnid> folders or flat with "
    "LOC_val_solution.csv), or set SSLKIT_DATA to the folder holding imagenet/"
)


def _folder(root: Path, split: str) -> Path:
    if split not in ("train", "test"):
        raise DataError(f"unknown split '{split}': use 'train' or 'test' (ImageNet's val/)")
    folder = root / "imagenet" / ("train" if split == "train" else "val")
    if not folder.is_dir() or not any(folder.iterdir()):
        raise DataError(f"ImageNet cannot be downloaded and '{folder}' is missing or empty; {WHERE}")
    return folder


def _by_subfolder(folder: Path, files: list[Path]) -> list[str]:
    parts = [f.relative_to(folder).parts for f in files]
    flat = [f for f, p in zip(files, parts, strict=True) if len(p) != 2]
    if flat:
        raise DataError(f"'{flat[0]}' is not in a <wnid> sub-folder of '{folder}'; {WHERE}")
    return [p[0] for p in parts]


def _find(folder: Path, name: str) -> Path | None:
    for place in (folder, folder.parent, folder.parent / "ILSVRC2012_devkit_t12" / "data"):
        if (place / name).is_file():
            return place / name
    return None


def _val_labels(folder: Path, files: list[Path]) -> list[str]:
    """Flat val/: each file's wnid from LOC_val_solution.csv, or the devkit's ground truth + meta.mat."""
    solution, truth = _find(folder, SOLUTION), _find(folder, GROUND_TRUTH)
    if solution is not None:
        with open(solution, newline="") as f:
            wnids = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    elif truth is not None:
        ids = [int(line) for line in truth.read_text().split()]
        names = _ilsvrc_wnids(truth)
        wnids = {f"ILSVRC2012_val_{k:08d}": names[i] for k, i in enumerate(ids, 1)}
    else:
        raise DataError(
            f"'{folder}' holds val images without labels: add {SOLUTION}, or {GROUND_TRUTH} with the devkit's "
            "meta.mat, or sort them into <wnid> folders"
        )
    missing = [f.name for f in files if f.stem not in wnids]
    if missing:
        raise DataError(
            f"'{folder}': {len(missing)} val image(s) have no label (first: {missing[0]}); use the label file "
            "of this val set"
        )
    return [wnids[f.stem] for f in files]


def _ilsvrc_wnids(truth: Path) -> dict[int, str]:
    meta = _find(truth.parent, "meta.mat")
    if meta is None:
        raise DataError(
            f"{truth.name} numbers classes by ILSVRC2012_ID: put the devkit's meta.mat beside it (or use {SOLUTION})"
        )
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"reading {meta} needs scipy: pip install scipy (or use {SOLUTION})") from None
    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["ILSVRC2012_ID"]) <= 1000}


def imagenet_source(split: str, root: Path) -> Source:
    """The images of one split with their wnid labels (numbered by the sorted train wnids)."""
    folder = _folder(root, split)
    train = root / "imagenet" / "train"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else None
    files = walk_images(folder)
    if not files:
        raise DataError(f"'{folder}' holds no images; {WHERE}")
    nested = any(len(f.relative_to(folder).parts) > 1 for f in files)
    tags = _by_subfolder(folder, files) if split == "train" or nested else _val_labels(folder, files)
    return labelled_files("folder", str(folder), folder, files, list(tags), classes)


def load_imagenet(split: str, root: Path):
    """ImageNet's train or val split as a :class:`~sslkit.data.store.Store` (packed on first use)."""
    from .store.cache import cached_source_store

    return cached_source_store(
        imagenet_source(split, root), encoding="jpeg", max_side=MAX_SIDE, name=f"imagenet-{split}"
    )
