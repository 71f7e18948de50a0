"""SimCLR: two augmented views of every image are pulled together, every other image pushed away.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020.

- views (:meth:`SimCLR.views`): drawn by sslkit's engine from the full-resolution image, per
  sample, on the device: random-resized crop (scale 0.08-1), flip, colour jitter with p=0.8 at
  strength 0.5 (brightness, contrast, saturation 0.4, hue 0.1), grayscale with p=0.2, no blur on
  32-px images (the paper's CIFAR-10 settings, appendix B.9). Extra groups of smaller views give
  multi-crop (``--set task.views=...``).
- head: the backbone's last stage, global average pool, a projection MLP (Linear, BatchNorm1d,
  ReLU, Linear).
- loss: NT-Xent at temperature 0.5 (CIFAR-10, appendix B.9) over the global batch
  (:func:`sslkit_simclr.loss.nt_xent`), with the contrastive accuracy and the projections'
  per-dimension std (collapse shows as std -> 0; uniform spread is 1/sqrt(d)) as metrics.

Only the public API is used: the task declares its views, returns a :class:`sslkit.Loss`, and
uses ``sslkit.distributed`` for the global negatives; the engine does the rest.
"""

from __future__ import annotations

from itertools import groupby

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from sslkit import Backbone, Config, Loss, PretextTask, View

from .loss import nt_xent

# Chen et al. 2020, appendix B.9 (CIFAR-10): colour distortion of strength 0.5, no blur.
CIFAR_VIEWS = (
    View(count=2, scale=(0.08, 1.0), jitter=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, grayscale=0.2),
)


class SimCLRConfig(Config):
    temperature: float = Field(0.5, gt=0, description="NT-Xent temperature (CIFAR-10: 0.5)")
    projection_dim: int = Field(128, ge=1, description="output size of the projection MLP")
    hidden_dim: int = Field(512, ge=1, description="hidden size of the projection MLP")
    stage: str | None = Field(None, description="backbone stage the views are embedded from (default: the last)")
    gather: bool = Field(True, description="negatives from every process's views (global batch)")
    views: tuple[View, ...] = Field(CIFAR_VIEWS, description="view groups (add a group of small views for multi-crop)")


def projector(channels: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(channels, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)
    )


def embed(backbone: Backbone, stage: str, views: list[Tensor]) -> list[Tensor]:
    """Views [B, C, s, s] -> pooled stage features [B, C']: one backbone call per run of views of
    one size (multi-crop's large and small views cannot share a batch)."""
    out: list[Tensor] = []
    for _, group in groupby(views, key=lambda v: tuple(v.shape[-2:])):
        same = list(group)
        maps = backbone(torch.cat(same), [stage])[stage]  # [len(same) * B, C', h, w]
        out += list(F.adaptive_avg_pool2d(maps, 1).flatten(1).chunk(len(same)))
    return out


class SimCLR(PretextTask):
    """SimCLR's pretext task (see the module docstring)."""

    Config = SimCLRConfig
    presets = {
        # A short run on a CPU (2 cores, NIN width 0.5, 32-px images): AdamW with a warm-up and
        # a cosine decay (LARS at the paper's batch sizes is for GPUs; see the recipe).
        "default": {
            "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "exclude_norm_bias": True},
            "schedule": {"kind": "cosine", "warmup_epochs": 1},
        },
        # The paper's optimiser: LARS, lr 0.3 x batch / 256, weight decay 1e-6 (CIFAR: 1e-6 at
        # batch 1024), biases and BatchNorm excluded from weight decay and LARS adaptation.
        "paper": {
            "epochs": 1000,
            "optim": {
                "name": "lars",
                "lr": 1.2,
                "weight_decay": 1e-6,
                "momentum": 0.9,
                "nesterov": False,
                "exclude_norm_bias": True,
            },
            "schedule": {"kind": "cosine", "warmup_epochs": 10},
            "data": {"batch_size": 1024},
        },
    }
    default_preset = "default"

    def __init__(self, config: SimCLRConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: SimCLRConfig = config
        stage = backbone.stage(config.stage) if config.stage else backbone.last_stage
        self.stage = stage.name
        self.projector = projector(stage.channels, config.hidden_dim, config.projection_dim)

    def views(self) -> tuple[View, ...]:
        return self.config.views

    def prepare(self, images: Tensor | list[Tensor], generator: torch.Generator) -> tuple[list[Tensor], None]:
        """The engine's views [B, C, s, s] each, as they are; no targets (the loss needs none)."""
        if not isinstance(images, list):
            raise TypeError("SimCLR declares views: the engine passes a list of them")
        return images, None

    def forward(self, backbone: Backbone, inputs: list[Tensor]) -> list[Tensor]:
        """views -> projections [B, projection_dim], one per view."""
        return [self.projector(f) for f in embed(backbone, self.stage, inputs)]

    def loss(self, outputs: list[Tensor], targets: Tensor | None) -> Loss:
        loss, accuracy = nt_xent(outputs, self.config.temperature, self.config.gather)
        z = F.normalize(torch.cat(outputs).detach().float(), dim=1)
        return Loss(loss, {"acc": accuracy, "std": z.std(dim=0).mean()})
