"""Context prediction: classify where a patch lies relative to the centre patch of a 3x3 grid.

Doersch, Gupta, Efros, "Unsupervised Visual Representation Learning by Context Prediction",
ICCV 2015. Official code: github.com/cdoersch/deepcontext. Batch form (each image's 8 outer
patches paired with its centre in the same batch) and fusion head as mmselfsup's RelativeLoc.

- transform (:meth:`ContextPrediction.prepare`): optional upsampling, then one jittered patch
  per cell of a 3x3 grid (:mod:`.patches`), then the shortcut countermeasures per patch
  (:mod:`.shortcuts`): down-and-up sampling, grayscale, chromatic-aberration handling,
  per-patch normalisation. B images -> 8B pairs, label-major like rotation's copies; labels
  follow Doersch et al., ICCV 2015, sec. 3, fig. 2 (``OFFSETS``).
- model (:meth:`ContextPrediction.forward`): siamese, late fusion. One backbone (shared
  weights) embeds both patches in a single call; its last stage is average-pooled (globally, or
  to a ``embed_grid`` x ``embed_grid`` grid that keeps the layout inside the patch, as the
  paper's fc6 saw conv5's map), the two embeddings are concatenated and only the fusion head
  sees both:
  Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear(8). The backbone stays an ordinary
  whole-image encoder (probes and export use it unchanged).
- loss: mean cross-entropy over the 8B pairs (chance 12.5%).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from sslkit import Backbone, Config, PretextTask

from .patches import OFFSETS, OUTER_CELLS, resolve_geometry, sample_patches
from .shortcuts import (
    LUMA,
    colour_drop,
    grayscale,
    green_magenta_projection,
    patch_normalize,
    project_out_green_magenta,
    random_resample,
)

DIRECTIONS = ("up-left", "up", "up-right", "left", "right", "down-left", "down", "down-right")


class ContextConfig(Config):
    patch_size: int | None = Field(None, ge=2, description="patch side in px (default: ~1/4 of the image side)")
    jitter: int | None = Field(
        None, ge=0, description="max shift of a patch either way inside its cell, px (default: ~7% of the patch)"
    )
    gap: int | None = Field(
        None, ge=0, description="min px between neighbouring cells, so between patches (default: the rest of the image)"
    )
    upsample: int | None = Field(
        None, ge=8, description="first resize images whose shorter side is smaller to this many px (bilinear)"
    )
    random_grid: bool = Field(True, description="place the 3x3 grid at a random position in the image (else centred)")
    chromatic: Literal["projection", "drop", "none"] = Field(
        "projection",
        description="chromatic aberration: project out green-magenta, or keep one random channel (+1/100 noise)",
    )
    grayscale: float = Field(0.66, ge=0, le=1, description="probability of turning a patch to grayscale")
    resample: float = Field(0.33, ge=0, le=1, description="probability of down-and-up sampling a patch")
    resample_min_scale: float = Field(0.4, gt=0, lt=1, description="smallest down-sampling factor")
    patch_norm: Literal["rms", "mean", "none"] = Field(
        "rms", description="per-patch normalisation: mean subtraction, then unit RMS (rms) or not (mean)"
    )
    share_centre: bool = Field(
        True, description="embed each centre patch once for its 8 pairs (9B backbone passes instead of 16B)"
    )
    embed_grid: int = Field(
        1,
        ge=1,
        description="each patch's embedding: its last stage average-pooled to a g x g grid and flattened "
        "(1: global average pool; 2+: keeps where things lie in the patch, as the paper's fc6 did)",
    )
    hidden: int = Field(512, ge=8, description="width of the fusion head's hidden layer (fc7)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout before the pair head's last (classifying) layer")


_SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}


class ContextPrediction(PretextTask):
    """Relative patch location (see the module docstring)."""

    Config = ContextConfig
    presets = {
        # 32x32 images (CIFAR): 8x8 patches in 10-px cells. No zero-padded crop: a padded border
        # inside an outer patch would tell its side of the grid.
        "default": {
            "epochs": 60,
            "schedule": {"milestones": [30, 45], "gamma": 0.2},
            "optim": _SGD,
            "data": {"batch_size": 128, "crop_padding": 0},
        },
        # 32x32 images upsampled to 64 first: 16x16 patches, more texture per patch, ~4x the cost.
        "upsampled": {
            "epochs": 60,
            "schedule": {"milestones": [30, 45], "gamma": 0.2},
            "optim": _SGD,
            "task": {"upsample": 64},
            "data": {"batch_size": 128, "crop_padding": 0},
        },
        # 96x96 images (STL-10 style, as in Gidaris et al., ICCV 2019): 32-px cells with a random 24x24 patch in
        # each, per-patch standardisation, grayscale p = 0.66, horizontal flip of the image first.
        "stl": {
            "epochs": 100,
            "schedule": {"milestones": [50, 75], "gamma": 0.2},
            "optim": _SGD,
            "task": {"patch_size": 24, "jitter": 4, "gap": 0, "grayscale": 0.66, "patch_norm": "rms"},
            "data": {"batch_size": 128, "crop_padding": 0, "flip": True},
        },
    }
    default_preset = "default"

    def __init__(self, config: ContextConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: ContextConfig = config
        self.stage = backbone.last_stage.name
        c = backbone.last_stage.channels * config.embed_grid**2
        self.pool = nn.AdaptiveAvgPool2d(config.embed_grid)
        self.head = nn.Sequential(
            nn.Linear(2 * c, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(OFFSETS)),
        )
        # Constant tensors of the transform, moved with the task (.to(device)) so no step copies
        # them from the host (each such copy waits for the GPU). Derived, so not persistent.
        self.register_buffer("outer_cells", torch.tensor(OUTER_CELLS), persistent=False)
        self.register_buffer("projection", green_magenta_projection(), persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA), persistent=False)

    def countermeasures(self, patches: Tensor, generator: torch.Generator) -> Tensor:
        """The configured shortcut countermeasures on patches [N, C, p, p], per patch."""
        cfg = self.config
        x = random_resample(patches, cfg.resample, cfg.resample_min_scale, generator)
        if x.shape[1] == 3:  # colour cues exist only in colour images
            x = grayscale(x, cfg.grayscale, generator, self.luma)
            if cfg.chromatic == "projection":
                x = project_out_green_magenta(x, self.projection)
            elif cfg.chromatic == "drop":
                x = colour_drop(x, generator)
        return patch_normalize(x, cfg.patch_norm)

    def prepare(self, images: Tensor, generator: torch.Generator) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """images [B, C, H, W] -> ((centres [B or 8B, C, p, p], outer [8B, C, p, p]), targets [8B])."""
        cfg = self.config
        h, w = images.shape[-2:]
        if cfg.upsample is not None and min(h, w) < cfg.upsample:
            scale = cfg.upsample / min(h, w)
            size = (max(cfg.upsample, round(h * scale)), max(cfg.upsample, round(w * scale)))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        geom = resolve_geometry(min(images.shape[-2:]), cfg.patch_size, cfg.jitter, cfg.gap)
        s = sample_patches(images, geom, generator, cfg.random_grid, self.outer_cells)
        centre = s.centre if cfg.share_centre else s.centre.repeat(8, 1, 1, 1)  # label-major, as outer
        both = self.countermeasures(torch.cat([centre, s.outer]), generator)
        return (both[: centre.shape[0]], both[centre.shape[0] :]), s.targets

    def forward(self, backbone: Backbone, inputs: tuple[Tensor, Tensor]) -> Tensor:
        """(first [N1, ...], second [N2, ...]) -> logits [N2, 8]; N2 a multiple of N1 (shared
        centres: pair j uses first[j % N1], matching the label-major order of :meth:`prepare`)."""
        first, second = inputs
        n1, n2 = first.shape[0], second.shape[0]
        if n2 % n1:
            raise ValueError(f"context pairs: {n2} second patches is not a multiple of {n1} first patches")
        # One backbone call for both sides: shared weights, one BatchNorm batch, better throughput.
        emb = self.pool(backbone(torch.cat([first, second]), [self.stage])[self.stage]).flatten(1)  # [N1+N2, C*g*g]
        e1, e2 = emb[:n1], emb[n1:]
        if n1 != n2:
            e1 = e1.repeat(n2 // n1, 1)
        return self.head(torch.cat([e1, e2], dim=1))

    def preview(self, inputs: tuple[Tensor, Tensor], targets: Tensor) -> list[tuple[list[Tensor], str]]:
        """One (centre, outer patch) pair per sample, captioned with its label and direction."""
        first, second = inputs
        n1 = first.shape[0]
        b = second.shape[0] // len(OFFSETS)
        # Image-major order (all 8 pairs of image 0, then image 1 ...) reads best in a grid.
        order = [k * b + i for i in range(b) for k in range(len(OFFSETS))]
        return [([first[j % n1], second[j]], f"{int(targets[j])} {DIRECTIONS[int(targets[j])]}") for j in order]
