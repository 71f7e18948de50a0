"""The views the engine draws for tasks that declare them (sslkit.data.views): torchvision's
transforms per image, drawn for the global batch, one-line errors for views the data cannot give."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from pydantic import ValidationError

from sslkit.data.views import (
    View,
    check_views,
    color_jitter,
    draw_views,
    gaussian_blur,
    grayscale,
    hsv_to_rgb,
    rgb_to_hsv,
)
from sslkit.errors import ConfigError


def _images(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_hsv_round_trip_and_torchvision_hue():
    x = _images().float() / 255
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    shifted = color_jitter(x[:1], View(brightness=0, contrast=0, saturation=0, hue=0.3), torch.full((1, 4), 0.9), [3])
    want = TF.adjust_hue(x[:1], (2 * 0.9 - 1) * 0.3)
    torch.testing.assert_close(shifted, want, atol=2e-3, rtol=0)


@pytest.mark.parametrize(("op", "name"), [(0, "brightness"), (1, "contrast"), (2, "saturation")])
def test_jitter_adjustments_are_torchvisions_per_image(op, name):
    x = _images(4).float() / 255
    u = torch.tensor([[0.0] * 4, [0.25] * 4, [0.75] * 4, [1.0] * 4])
    view = View(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    got = color_jitter(x, view, u, [op])
    adjust = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast, "saturation": TF.adjust_saturation}
    for i in range(4):
        factor = 0.6 + 0.8 * float(u[i, op])  # uniform in [1 - 0.4, 1 + 0.4]
        torch.testing.assert_close(got[i : i + 1], adjust[name](x[i : i + 1], factor), atol=1e-5, rtol=0)


def test_grayscale_and_blur_are_torchvisions():
    x = _images(3).float() / 255
    torch.testing.assert_close(grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    got = gaussian_blur(x, sigma, 5)
    for i in range(3):
        want = TF.gaussian_blur(x[i : i + 1], [5, 5], [float(sigma[i])] * 2)
        torch.testing.assert_close(got[i : i + 1], want, atol=1e-5, rtol=0)


def test_views_have_their_sizes_and_stay_in_range():
    views = [
        View(count=2, jitter=0.8, grayscale=0.2, blur=0.5, solarize=0.2),
        View(count=3, size=16, scale=(0.05, 0.3)),
    ]
    out = draw_views(_images(), None, views, 32, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in out] == [(6, 3, 32, 32)] * 2 + [(6, 3, 16, 16)] * 3
    assert all(v.min() >= 0 and v.max() <= 1 for v in out)
    assert not torch.equal(out[0], out[1])  # two draws, not one view twice


def test_views_are_drawn_for_the_global_batch():
    """A process drawing its share (offset) gets exactly the rows one process draws for all."""
    images = _images(8)
    views = [View(count=2, jitter=0.8, grayscale=0.2, blur=0.5, solarize=0.2, size=24)]
    whole = draw_views(images, None, views, 32, torch.Generator().manual_seed(3))
    for rank in range(2):
        share = draw_views(
            images[rank * 4 : rank * 4 + 4], None, views, 32, torch.Generator().manual_seed(3), 8, rank * 4
        )
        for w, s in zip(whole, share, strict=True):
            torch.testing.assert_close(s, w[rank * 4 : rank * 4 + 4], atol=1e-6, rtol=0)


def test_views_are_cut_from_the_full_resolution_image():
    """A 16-px view of a 64-px image is resampled from the 64-px pixels (roi_align averages the
    box), not from a copy already shrunk to the training size."""
    stripes = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    stripes[..., ::2] = 255  # 1-px stripes: any intermediate 32-px resize would alias them
    view = View(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)
    (out,) = draw_views(stripes, None, [view], 64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=1e-3, rtol=0)


def test_views_the_data_cannot_give_are_one_line():
    with pytest.raises(ConfigError, match="views of 64 px .* larger than the 32-px training images"):
        check_views([View(size=64)], 32, 3, "simclr")
    with pytest.raises(ConfigError, match="1 channel"):
        check_views([View(grayscale=0.2)], 32, 1, "simclr")
    with pytest.raises(ValidationError, match="sizee"):
        View(sizee=16)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="min <= max"):
        View(scale=(0.9, 0.1))
