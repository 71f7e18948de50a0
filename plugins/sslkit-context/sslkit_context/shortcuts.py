"""Countermeasures against the shortcuts that let a network locate patches without semantics.

Doersch, Gupta, Efros, ICCV 2015, sec. 3.1 ("Avoiding trivial solutions"), and their code
(github.com/cdoersch/deepcontext); grayscale from the modern ports (mmselfsup's RelativeLoc). Each
function maps patches [N, C, p, p] to the same shape, in batch; random choices are per patch and
drawn from the caller's generator.

- chromatic aberration: lenses shift green against magenta towards the image border, so the
  colour fringe tells where a patch was. :func:`project_out_green_magenta` removes that axis;
  :func:`colour_drop` keeps one random channel and replaces the others with faint noise.
- :func:`grayscale`: another way to remove colour cues, for a fraction of the patches.
- :func:`random_resample`: down- then up-sampling, so resolution (blur) is not a cue.
- :func:`patch_normalize`: removes brightness/contrast differences between the two patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Green-magenta direction of RGB space (the paper's a = [-1, 2, -1]).
GREEN_MAGENTA = (-1.0, 2.0, -1.0)
# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


def green_magenta_projection() -> Tensor:
    """B = I - a^T a / (a a^T), a = [-1, 2, -1]: float32 [3, 3] on the CPU."""
    a = torch.tensor(GREEN_MAGENTA)
    return torch.eye(3) - torch.outer(a, a) / a.dot(a)


def project_out_green_magenta(x: Tensor, proj: Tensor | None = None) -> Tensor:
    """Multiply every pixel by B = I - a^T a / (a a^T), a = [-1, 2, -1] (the paper's projection).

    Only the component along ``a`` is removed; a grey pixel (equal channels) is unchanged.
    ``proj``: :func:`green_magenta_projection` already on ``x``'s device (no host-to-device
    copy, which waits for the GPU, per call).
    """
    proj = (green_magenta_projection() if proj is None else proj).to(device=x.device, dtype=x.dtype)
    return torch.einsum("ij,njhw->nihw", proj, x)


def colour_drop(x: Tensor, generator: torch.Generator, noise: float = 0.01) -> Tensor:
    """Keep one random channel per patch; replace the others with Gaussian noise whose std is
    ``noise`` (1/100 in the paper) times that channel's std over the patch."""
    n, c = x.shape[:2]
    keep = torch.randint(0, c, (n,), generator=generator, device=x.device)
    kept = x[torch.arange(n, device=x.device), keep]  # [N, p, p]
    scale = kept.flatten(1).std(dim=1).clamp_min(1e-6) * noise  # [N]
    fill = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * scale[:, None, None, None]
    mask = (torch.arange(c, device=x.device)[None, :] == keep[:, None])[:, :, None, None]  # [N, C, 1, 1]
    return torch.where(mask, x, fill)


def grayscale(x: Tensor, p: float, generator: torch.Generator, luma: Tensor | None = None) -> Tensor:
    """With probability ``p`` per patch, replace every channel by the luma of the pixel
    (``luma``: the :data:`LUMA` weights already on ``x``'s device, to skip a copy per call)."""
    if p <= 0:
        return x
    n = x.shape[0]
    w = (torch.tensor(LUMA) if luma is None else luma).to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    gray = (x * w).sum(dim=1, keepdim=True).expand_as(x)
    chosen = torch.rand(n, generator=generator, device=x.device) < p
    return torch.where(chosen[:, None, None, None], gray, x)


def random_resample(x: Tensor, p: float, min_scale: float, generator: torch.Generator, levels: int = 3) -> Tensor:
    """With probability ``p`` per patch, downsample to one of ``levels`` sizes between
    ``min_scale`` x and just below the patch size (area averaging), then upsample back (bilinear).

    The paper downsampled some patches to as little as 100 pixels; the loop runs over the few
    sizes, never over patches. Every patch is resampled at every size and the chosen one kept
    per patch (``torch.where``): selecting the chosen patches first (``nonzero``) would read
    their count back from the GPU, a sync per size per step. Resampling is per patch, so the
    values are the same; the extra work is on patches, small next to the network.
    """
    if p <= 0:
        return x
    n, _, h, w = x.shape
    side = min(h, w)
    sizes = torch.linspace(max(1.0, min_scale * side), side - 1, levels).round().int().unique().tolist()
    if not sizes or side < 2:
        return x
    chosen = torch.rand(n, generator=generator, device=x.device) < p
    level = torch.randint(0, len(sizes), (n,), generator=generator, device=x.device)
    out = x
    for i, s in enumerate(sizes):
        small = F.interpolate(x, size=(max(1, s * h // side), max(1, s * w // side)), mode="area")
        up = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        out = torch.where((chosen & (level == i))[:, None, None, None], up, out)
    return out


def patch_normalize(x: Tensor, mode: str, eps: float = 1e-5) -> Tensor:
    """``mean``: subtract each channel's mean over the patch; ``rms``: then scale the patch to
    unit RMS over all its values (what the paper's code does; one factor per patch, so faint
    dropped channels stay faint); ``none``: unchanged."""
    if mode == "none":
        return x
    x = x - x.mean(dim=(2, 3), keepdim=True)
    if mode == "rms":
        x = x / x.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(eps).sqrt()
    return x
