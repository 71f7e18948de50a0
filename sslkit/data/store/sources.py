"""What a pack reads: a folder of images, a list file, or a registered dataset (no torch until needed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import DataError
from ...files import IMAGE_SUFFIXES, walk_images

if TYPE_CHECKING:
    from ...plugins import Plugins
    from ..datasets import ImageData


@dataclass
class Source:
    """The images to pack, in order: file paths (folder, list file) or arrays (a dataset)."""

    kind: str  # "folder" | "list" | "dataset"
    where: str  # resolved path or dataset name (recorded in the manifest)
    names: list[str]  # one per image: relative file name (or a dataset key)
    labels: list[int] | None
    classes: list[str]
    paths: list[str] = field(default_factory=list)  # folder / list: absolute paths
    data: ImageData | None = None  # dataset: the decoded images
    identity: str = ""  # changes when the listing (names, sizes, mtimes) or the pixels change

    def __len__(self) -> int:
        return len(self.names)

    def key(self, options: dict[str, Any]) -> str:
        """Same source and same options: the same key (resuming and caching compare it)."""
        text = json.dumps([self.kind, self.where, self.identity, options], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def arrays(self, start: int) -> Iterator[np.ndarray]:
        """A dataset's images from ``start`` on, as RGB [H, W, 3] uint8."""
        assert self.data is not None
        images = self.data.images
        for i in range(start, len(images)):
            x = images[i].numpy().transpose(1, 2, 0)
            yield np.ascontiguousarray(np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[:, :, :3])


def listing_identity(root: Path | None, files: list[Path], names: list[str]) -> str:
    digest = hashlib.sha256(str(root).encode())
    for f, r in zip(files, names, strict=True):
        try:
            st = f.stat()
            digest.update(f"|{r}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:  # a dangling or unreadable entry still counts (it is skipped when packed)
            digest.update(f"|{r}|?".encode())
    return digest.hexdigest()


def folder_source(root: Path) -> Source:
    """Class sub-folders are labels when every image sits in one (the rule of ``load_folder``)."""
    root = root.resolve()
    files = walk_images(root)
    if not files:
        raise DataError(
            f"'{root}': no images found (looked for {', '.join(IMAGE_SUFFIXES)}); give a folder of image files"
        )
    names = [f.relative_to(root).as_posix() for f in files]
    parents = [Path(r).parent.as_posix() for r in names]
    labelled = "." not in parents and all("/" not in p for p in parents)
    classes = sorted(set(parents)) if labelled else []
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[p] for p in parents] if labelled else None
    return Source(
        "folder", str(root), names, labels, classes, [str(f) for f in files], None, listing_identity(root, files, names)
    )


def labelled_files(
    kind: str, where: str, base: Path, paths: list[Path], tags: list[str | None], classes: list[str] | None = None
) -> Source:
    """Files with optional label names (all or none); ``classes`` fixes the label order (default: sorted names)."""
    if len({t is None for t in tags}) > 1:
        raise DataError(f"'{where}': some images have a label and some do not; label every image or none")
    named = sorted({t for t in tags if t is not None})
    classes = classes if classes is not None else named
    unknown = sorted(set(named) - set(classes))
    if unknown:
        raise DataError(
            f"'{where}': labels {', '.join(unknown[:3])} are not among the {len(classes)} known classes; fix the labels"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[t] for t in tags] if named else None  # type: ignore[index]
    names = [p.relative_to(base).as_posix() if p.is_relative_to(base) else str(p) for p in paths]
    identity = listing_identity(base, paths, [f"{n}\t{t}" for n, t in zip(names, tags, strict=True)])
    identity += "|" + ",".join(classes if named else [])
    return Source(kind, where, names, labels, classes if named else [], [str(p) for p in paths], None, identity)


def list_source(list_file: Path) -> Source:
    """One image path per line (relative to the list file's folder), optionally ``\\tLABEL``."""
    base = list_file.resolve().parent
    paths: list[Path] = []
    tags: list[str | None] = []
    for line in list_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        name, _, label = line.partition("\t")
        paths.append(base / name.strip())
        tags.append(label.strip() or None)
    if not paths:
        raise DataError(
            f"list file '{list_file}' names no images; write one image path per line (optionally a tab and a label)"
        )
    return labelled_files("list", str(list_file.resolve()), base, paths, tags)


def dataset_source(name: str, plugins: Plugins) -> Source:
    from ..datasets import ImageData, load_registered

    data = load_registered(name, plugins)
    if not isinstance(data, ImageData):
        raise DataError(
            f"dataset '{name}' is already a packed store ({data}); use it directly instead of packing it again"
        )
    digest = hashlib.sha256(data.images.contiguous().numpy().data)
    if data.labels is not None:
        digest.update(data.labels.numpy().tobytes())
    names = list(data.files) if data.files else [f"{name}/{i:08d}" for i in range(len(data))]
    labels = None if data.labels is None else data.labels.tolist()
    return Source("dataset", name, names, labels, list(data.classes), [], data, digest.hexdigest())


def resolve_source(source: str | Path, plugins: Plugins | None = None) -> Source:
    """A folder or list file when ``source`` exists on disk, else a registered dataset name."""
    path = Path(source).expanduser()
    if path.is_dir():
        return folder_source(path)
    if path.is_file():
        return list_source(path)
    if plugins is None:
        from ...plugins import load_plugins

        plugins = load_plugins()
    if str(source) in plugins.datasets:
        return dataset_source(str(source), plugins)
    known = ", ".join(plugins.datasets.names())
    raise DataError(
        f"source '{source}': no such folder, list file or dataset; give a folder of images, a list file or one "
        f"of: {known}"
    )
