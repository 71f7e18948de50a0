"""The one image decoder (sslkit.images): every caller gets exactly the pixels it got before.

The references below are the three decoders sslkit had before they became one (the folder
loader's, ``sslkit.deploy``'s and ``sslkit viz``'s), kept verbatim as the specification.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from sslkit import deploy
from sslkit.data import folders
from sslkit.errors import DataError
from sslkit.images import decode_image, fit_image, header_size, read_image
from sslkit.viz.pictures import load_images


def _old_folder_decode(path: Path, size: int | None) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except Exception:
        return None


def _old_deploy_fit(image: Image.Image, shape) -> np.ndarray:
    c, h, w = shape
    image = image.convert("L" if c == 1 else "RGB")
    if image.size != (w, h):
        image = ImageOps.fit(image, (w, h), Image.Resampling.BICUBIC)
    a = np.asarray(image, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _old_viz_load(paths, size: int) -> torch.Tensor:
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.BICUBIC)
            out.append(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy())
    return torch.from_numpy(np.stack(out))


def _exif_rotated_jpeg(pixels: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory) -> list[Path]:
    """Odd sizes in every mode the decoder meets: RGB, RGBA, LA, L, P (with transparency), 16-bit
    grey PNG, CMYK JPEG, an EXIF-rotated JPEG, and a 1-bit image."""
    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(7)

    def noise(h: int, w: int, c: int | None = None) -> np.ndarray:
        return rng.integers(0, 256, (h, w) if c is None else (h, w, c), dtype=np.uint8)

    Image.fromarray(noise(37, 53, 3)).save(root / "rgb.png")
    Image.fromarray(noise(61, 29, 4), "RGBA").save(root / "rgba.png")
    Image.fromarray(noise(33, 33, 2), "LA").save(root / "la.png")
    Image.fromarray(noise(19, 45)).save(root / "grey.png")
    pal = Image.fromarray(noise(41, 23, 3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=17)
    pal.info["transparency"] = 3
    pal.save(root / "palette.png")
    Image.fromarray(rng.integers(0, 65536, (27, 35), dtype=np.uint16)).save(root / "deep16.png")
    Image.fromarray(noise(30, 50, 3)).convert("CMYK").save(root / "cmyk.jpg", quality=90)
    (root / "exif.jpg").write_bytes(_exif_rotated_jpeg(noise(24, 40, 3)))
    Image.fromarray(noise(31, 17) > 127).save(root / "bits.png")
    Image.fromarray(noise(32, 32, 3)).save(root / "exact.png")  # already the target size
    return sorted(root.iterdir())


@pytest.mark.parametrize("size", [None, 32, 16])
def test_folder_loader_pixels_unchanged(odd_images, size):
    for path in odd_images:
        old, new = _old_folder_decode(path, size), folders._decode(path, size)
        assert old is not None and new is not None
        assert new.dtype == np.uint8 and new.flags.c_contiguous
        np.testing.assert_array_equal(new, old, err_msg=path.name)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 32, 32), (3, 24, 40), (1, 17, 9)])
def test_deploy_pixels_unchanged(odd_images, shape):
    for path in odd_images:
        with Image.open(path) as im:
            old = _old_deploy_fit(im, shape)
        np.testing.assert_array_equal(deploy.decode(path, shape), old, err_msg=path.name)
        with Image.open(path) as im:
            np.testing.assert_array_equal(deploy.fit(im, shape), old, err_msg=path.name)


@pytest.mark.parametrize("size", [32, 20])
def test_viz_pixels_unchanged(odd_images, size):
    assert torch.equal(load_images(odd_images, size), _old_viz_load(odd_images, size))


def test_exif_orientation_is_not_applied(odd_images):
    """Documented choice: pixels as stored (the packer does not rotate either)."""
    exif = next(p for p in odd_images if p.name == "exif.jpg")
    assert read_image(exif, None).shape == (3, 24, 40)  # a "rotate 90" tag would make it 40 x 24


def test_sixteen_bit_saturates_as_pil_converts_it(odd_images):
    deep = next(p for p in odd_images if p.name == "deep16.png")
    with Image.open(deep) as im:
        expected = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(read_image(deep, None), expected)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert decode_image(bad, (8, 8)) is None
    assert header_size(bad) is None
    with pytest.raises(DataError, match="cannot read image .*broken.jpg") as err:
        read_image(bad, (8, 8))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="broken.jpg"):
        load_images([bad], 8)


def test_fit_image_shapes():
    im = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))
    assert fit_image(im, None).shape == (3, 10, 20)
    assert fit_image(im, (6, 4), channels=1).shape == (1, 6, 4)


def test_header_size_reads_width_and_height(odd_images):
    assert header_size(next(p for p in odd_images if p.name == "rgba.png")) == (29, 61)
