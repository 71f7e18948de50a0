"""Pack a folder of images into a store, read it back, verify it.

    python examples/pack_store.py OUT [FOLDER]

Without FOLDER, a small folder of mixed-size images in two classes (and one broken file) is
generated under OUT first, so the script runs anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from sslkit.data.store import Store, pack, verify


def demo_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            w, h = rng.integers(200, 640), rng.integers(150, 480)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / label / f"{i}.jpg")
    (root / "cats" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "store-demo")
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else demo_folder(out / "images")

    manifest = pack(folder, out / "store", max_side=128, on_progress=lambda done, total: None)
    print(f"packed {manifest['images']} images, skipped {manifest['skipped_count']}: {manifest['skipped']}")

    store = Store.open(out / "store")
    print(store.description, "classes:", store.classes, "mean:", [round(m, 3) for m in store.mean])
    image = store.read(0)  # uint8 [3, H, W]
    print("first image:", store.files[0], tuple(image.shape), "label", store.labels[0])
    verify(out / "store")  # raises a one-line DataError naming the first bad shard
    print("verified")


if __name__ == "__main__":
    main()
