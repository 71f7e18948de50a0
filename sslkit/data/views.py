"""Views the engine draws for the tasks that declare them (two views of one image for SimCLR and
BYOL, multi-crop for DINO), on the device, in batch, from the full-resolution decoded images.

A task lists its view groups (:class:`sslkit.View`: how many views, their size, crop scale and
ratio, and the probabilities of flip, colour jitter, grayscale, blur and solarisation). For
every group the engine draws one box per view and image (torchvision's ``RandomResizedCrop``
sampling), cuts all of them in one ``roi_align`` (each box resampled from the image as decoded,
not from an already resized copy), then applies the photometric transforms per sample in batch,
and normalises with the run's mean/std (unless the task asks for raw pixels in [0, 1]).

Every random number is drawn for the *global* batch and sliced (``total``/``offset``), as the
engine's single crop is, so N processes see exactly the views one process would.

The photometric transforms follow torchvision's definitions (``ColorJitter``, ``Grayscale``,
``GaussianBlur``, ``RandomSolarize``) with parameters drawn per image; the jitter's four
adjustments are applied in one random order per group and batch (torchvision draws it per call).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..interfaces import View
from .augment import image_sizes, random_resized_boxes

GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def check_views(views: Sequence[View], image_size: int, channels: int, task: str) -> None:
    """One-line errors for views the data cannot give (before anything trains)."""
    for i, view in enumerate(views):
        if view.size is not None and view.size > image_size:
            raise ConfigError(
                f"task '{task}' asks for views of {view.size} px (group {i}), larger than the {image_size}-px "
                "training images; ask for smaller views or set data.image_size"
            )
        colour = view.jitter and (view.saturation or view.hue) or view.grayscale
        if colour and channels != 3:
            raise ConfigError(
                f"task '{task}': view group {i} changes colour (saturation, hue or grayscale) but the images have "
                f"{channels} channel(s); set those probabilities to 0 for this data"
            )


def _rand(generator: torch.Generator, device: torch.device, total: int, offset: int, b: int, *rest: int) -> Tensor:
    """Uniform draws for the global batch ([total, *rest]), this process's rows."""
    return torch.rand(total, *rest, generator=generator, device=device)[offset : offset + b]


def _chance(p: float, generator: torch.Generator, device: torch.device, total: int, offset: int, b: int) -> Tensor:
    """[b] bool: which images get a transform of probability ``p`` (drawn even when p is 0 or 1,
    so the stream of random numbers does not depend on the probabilities)."""
    return _rand(generator, device, total, offset, b) < p


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's ``_blend``: ratio * a + (1 - ratio) * b, clamped to [0, 1]; ratio [B]."""
    r = ratio.view(-1, 1, 1, 1)
    return (r * a + (1 - r) * b).clamp_(0, 1)


def grayscale(x: Tensor) -> Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 1, H, W] luma (torchvision's weights)."""
    w = torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """[B, 3, H, W] RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn), batched."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [
        torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))
    ]  # each [B, 3, H, W]
    out = choices[0]
    for k in range(1, 6):
        out = torch.where((i == k).unsqueeze(1), choices[k], out)
    return out


def _factors(spread: float, u: Tensor) -> Tensor:
    """Factors uniform in [max(0, 1 - spread), 1 + spread] from uniforms ``u``."""
    lo = max(0.0, 1.0 - spread)
    return lo + (1.0 + spread - lo) * u


def color_jitter(x: Tensor, view: View, u: Tensor, order: Sequence[int]) -> Tensor:
    """torchvision's ColorJitter with per-image factors; ``u`` [B, 4] uniforms, ``order`` of the
    four adjustments (0 brightness, 1 contrast, 2 saturation, 3 hue)."""
    for op in order:
        if op == 0 and view.brightness:
            x = (x * _factors(view.brightness, u[:, 0]).view(-1, 1, 1, 1)).clamp_(0, 1)
        elif op == 1 and view.contrast:
            mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
            x = _blend(x, mean, _factors(view.contrast, u[:, 1]))
        elif op == 2 and view.saturation:
            x = _blend(x, grayscale(x), _factors(view.saturation, u[:, 2]))
        elif op == 3 and view.hue:
            hsv = rgb_to_hsv(x)
            shift = (2 * u[:, 3] - 1) * view.hue
            hue = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
            x = hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1))
    return x


def gaussian_blur(x: Tensor, sigma: Tensor, kernel: int) -> Tensor:
    """Per-image Gaussian blur (sigma [B] in pixels, an odd ``kernel`` side), reflect padding as
    torchvision's GaussianBlur; separable, one grouped convolution per direction."""
    b, c, h, w = x.shape
    half = kernel // 2
    offsets = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    weights = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)  # [B, k]
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, k]
    y = F.pad(x.reshape(1, b * c, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, weights.view(b * c, 1, 1, kernel), groups=b * c)
    y = F.conv2d(y, weights.view(b * c, 1, kernel, 1), groups=b * c)
    return y.view(b, c, h, w)


def blur_kernel(size: int) -> int:
    """The kernel side SimCLR uses: 10% of the view's side, odd, at least 3 (Chen et al. 2020, app. A)."""
    k = max(3, int(round(size * 0.1)))
    return k if k % 2 else k + 1


def photometric(
    x: Tensor, view: View, generator: torch.Generator, total: int, offset: int, order: Sequence[int]
) -> Tensor:
    """Colour jitter (its adjustments in ``order``), grayscale, blur and solarisation with the
    view's probabilities, per image: x [b, C, s, s] in [0, 1] -> the same shape. Draws for
    ``total`` images, keeps rows ``offset:``."""
    b, device = x.shape[0], x.device
    jitter = _chance(view.jitter, generator, device, total, offset, b)
    u = _rand(generator, device, total, offset, b, 4)
    if view.jitter:
        x = torch.where(jitter.view(-1, 1, 1, 1), color_jitter(x, view, u, order), x)
    gray = _chance(view.grayscale, generator, device, total, offset, b)
    if view.grayscale:
        x = torch.where(gray.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
    blur = _chance(view.blur, generator, device, total, offset, b)
    sigma = view.blur_sigma[0] + (view.blur_sigma[1] - view.blur_sigma[0]) * _rand(generator, device, total, offset, b)
    if view.blur:
        x = torch.where(blur.view(-1, 1, 1, 1), gaussian_blur(x, sigma, blur_kernel(x.shape[-1])), x)
    solar = _chance(view.solarize, generator, device, total, offset, b)
    if view.solarize:
        x = torch.where(solar.view(-1, 1, 1, 1) & (x >= 0.5), 1.0 - x, x)
    return x


def _crop(images: Tensor, boxes: Tensor, count: int, size: int) -> Tensor:
    """One ``roi_align`` for ``count`` boxes per image: boxes [count * b, 4] (view-major) ->
    [count * b, C, size, size] float 0..255 (anti-aliased when shrinking, as the engine's crop)."""
    from torchvision.ops import roi_align

    b = images.shape[0]
    index = torch.arange(b, device=images.device, dtype=boxes.dtype).repeat(count)[:, None]  # the same image
    rois = torch.cat([index, boxes.to(images.device)], 1)
    return roi_align(images.float(), rois, (size, size), 1.0, -1, True)


def draw_group(
    images: Tensor,
    sizes: Tensor,
    view: View,
    size: int,
    generator: torch.Generator,
    total: int,
    offset: int,
    order: Sequence[int] = (0, 1, 2, 3),
) -> list[Tensor]:
    """``view.count`` views of every image: uint8 images [b, C, H, W] (each image's own (h, w) in
    ``sizes`` [b, 2]) -> ``count`` tensors [b, C, size, size] float in [0, 1]."""
    b = images.shape[0]
    boxes = [random_resized_boxes(sizes, view.scale, view.ratio, generator, total, offset) for _ in range(view.count)]
    crops = _crop(images, torch.cat(boxes), view.count, size) / 255.0  # [count * b, C, size, size]
    out = []
    for v in range(view.count):
        x = crops[v * b : (v + 1) * b]  # [b, C, size, size]
        flip = _chance(view.flip, generator, images.device, total, offset, b)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        out.append(photometric(x, view, generator, total, offset, order))
    return out


def draw_views(
    images: Tensor,
    sizes: Tensor | None,
    views: Sequence[View],
    image_size: int,
    generator: torch.Generator,
    total: int | None = None,
    offset: int = 0,
) -> list[Tensor]:
    """Every declared view of every image, groups in order, views in order within a group:
    uint8 [b, C, H, W] -> a list of float [b, C, s, s] tensors in [0, 1] (``s``: the group's
    ``size``, default ``image_size``). Normalise with :func:`sslkit.data.augment.normalize` after."""
    total = images.shape[0] if total is None else total
    sizes = image_sizes(images, sizes)  # filled on the device: no host-to-device copy per step
    # The jitter's order per group, from the step's seed on the host: the same on every process,
    # and no read-back from the device.
    orders = torch.Generator().manual_seed(generator.initial_seed())
    out: list[Tensor] = []
    for view in views:
        order = torch.randperm(4, generator=orders).tolist()
        out += draw_group(images, sizes, view, view.size or image_size, generator, total, offset, order)
    return out
