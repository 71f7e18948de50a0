"""The one image decoder: an image file (or PIL image) -> uint8 [C, H, W] at a fixed size (no torch).

The folder loader (:mod:`sslkit.data.folders`), the deployed encoder and ``sslkit embed``
(:mod:`sslkit.deploy`) and the pictures of ``sslkit viz`` all decode through here, so a file gives
the same pixels to training, probes, export verification, embedding and pictures:

- colour: PIL's ``convert("RGB")`` (``"L"`` for one channel). Alpha is dropped, not composited
  over a background (a transparent pixel keeps its stored colour); palette images are expanded;
  16-bit samples saturate at 255 (PIL's conversion of ``I;16``). The packer
  (:mod:`sslkit.data.store.encode`) converts the same way.
- orientation: the pixels as stored. An EXIF orientation tag is *not* applied, here nor in the
  packer, so a camera JPEG tagged "rotate 90" is read unrotated everywhere alike (applying it in
  one path only would give training and deployment different images).
- size: the shorter side resized and the centre cropped to H x W (``ImageOps.fit``, bicubic);
  an image that already has that size is left untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import DataError

Size = tuple[int, int]  # (height, width) in pixels


def fit_image(image: Image.Image, size: Size | None, channels: int = 3) -> np.ndarray:
    """A PIL image -> uint8 [C, H, W] (C = ``channels``, 1 or 3), fitted to ``size`` when given."""
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = ImageOps.fit(image, (size[1], size[0]), Image.Resampling.BICUBIC)
    a = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


def read_image(path: str | Path, size: Size | None, channels: int = 3) -> np.ndarray:
    """An image file -> uint8 [C, H, W]; a one-line :class:`DataError` when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            return fit_image(im, size, channels)
    except Exception as exc:  # any decoder failure (truncated, not an image, a decompression bomb...)
        reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image '{path}' ({reason}); give image files (jpg, png, ...)") from None


def decode_image(path: str | Path, size: Size | None, channels: int = 3) -> np.ndarray | None:
    """Like :func:`read_image`, but None for an unreadable file (callers skip it and list it)."""
    try:
        return read_image(path, size, channels)
    except DataError:
        return None


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (nothing decoded), or None when it cannot be read."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # unreadable files are skipped later, by whichever path decodes them
        return None
