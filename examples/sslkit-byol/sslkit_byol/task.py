"""BYOL: an online network predicts a slowly moving target network's projection of another view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS 2020.

- views (:meth:`BYOL.views`): two groups of one view each, drawn by sslkit's engine: random
  resized crop, flip, colour jitter p=0.8 (0.4, 0.4, 0.2, 0.1), grayscale p=0.2, and the paper's
  asymmetry: solarisation only on the second view (p=0.2); blur (p=1.0 / 0.1 in the paper) is
  off for 32-px images, as in solo-learn's and lightly's CIFAR recipes.
- online: backbone -> global average pool -> projector (Linear, BN, ReLU, Linear) -> predictor
  (the same shape); target: a copy of backbone and projector, frozen (``requires_grad=False``:
  no optimiser state, no gradient sync), updated only in :meth:`BYOL.after_step` as an
  exponential moving average with momentum tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2,
  k the optimiser step, K the total steps (sec. 3.2).
- loss: 2 - 2 cos(p, sg(z')) for each view's prediction against the other view's target
  projection, symmetrised (eq. 2); metrics: the online projections' per-dimension std (collapse
  shows as std -> 0), the target momentum.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from sslkit import Backbone, Config, Loss, PretextTask, StepInfo, View
from sslkit.errors import ConfigError

VIEWS = (
    View(jitter=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, grayscale=0.2),
    View(jitter=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, grayscale=0.2, solarize=0.2),
)


class BYOLConfig(Config):
    projection_dim: int = Field(256, ge=1, description="projector and predictor output size (paper: 256)")
    hidden_dim: int = Field(512, ge=1, description="hidden size of projector and predictor (paper: 4096)")
    tau_base: float = Field(0.99, ge=0, le=1, description="target momentum at the start (paper: 0.996; CIFAR: 0.99)")
    stage: str | None = Field(None, description="backbone stage the views are embedded from (default: the last)")
    views: tuple[View, ...] = Field(VIEWS, description="two view groups (the second solarised)")


def mlp(channels: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)
    )


def momentum(tau_base: float, progress: float) -> float:
    """tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 for ``progress`` = k / K (Grill et al., sec. 3.2)."""
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def regression_loss(p: Tensor, z: Tensor) -> Tensor:
    """2 - 2 cos(p, z) per sample, averaged (the normalised MSE of eq. 2)."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.float(), dim=-1)).mean()


def pooled(backbone: Backbone, stage: str, x: Tensor) -> Tensor:
    return F.adaptive_avg_pool2d(backbone(x, [stage])[stage], 1).flatten(1)


class BYOL(PretextTask):
    """BYOL's pretext task (see the module docstring)."""

    Config = BYOLConfig
    presets = {
        # A short run on a CPU (2 cores, NIN width 0.5, 32-px images): AdamW with a warm-up and
        # a cosine decay (the paper's LARS at batch 4096 is for accelerators).
        "default": {
            "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "exclude_norm_bias": True},
            "schedule": {"kind": "cosine", "warmup_epochs": 1},
        },
        # The paper's optimiser: LARS, lr 0.2 x batch / 256, weight decay 1.5e-6, biases and
        # BatchNorm excluded (sec. 3.2 / appendix C).
        "paper": {
            "epochs": 1000,
            "optim": {
                "name": "lars",
                "lr": 0.8,
                "weight_decay": 1.5e-6,
                "momentum": 0.9,
                "nesterov": False,
                "exclude_norm_bias": True,
            },
            "schedule": {"kind": "cosine", "warmup_epochs": 10},
            "data": {"batch_size": 1024},
        },
    }
    default_preset = "default"

    def __init__(self, config: BYOLConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: BYOLConfig = config
        stage = backbone.stage(config.stage) if config.stage else backbone.last_stage
        self.stage = stage.name
        self.projector = mlp(stage.channels, config.hidden_dim, config.projection_dim)
        self.predictor = mlp(config.projection_dim, config.hidden_dim, config.projection_dim)
        # The target starts as a copy of the online network and never trains by gradient.
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.register_buffer("tau", torch.tensor(config.tau_base, dtype=torch.float64))

    def views(self) -> tuple[View, ...]:
        if len(self.config.views) != 2 or any(v.count != 1 for v in self.config.views):
            raise ConfigError("task.views: BYOL compares two views; give two view groups of count 1")
        return self.config.views

    def prepare(self, images: Tensor | list[Tensor], generator: torch.Generator) -> tuple[list[Tensor], None]:
        if not isinstance(images, list):
            raise TypeError("BYOL declares views: the engine passes a list of them")
        return images, None

    def forward(self, backbone: Backbone, inputs: list[Tensor]) -> dict[str, list[Tensor]]:
        """two views -> online projections and predictions, target projections (no gradient)."""
        both = torch.cat(inputs)  # [2B, C, s, s]: one backbone call for the two views
        z = self.projector(pooled(backbone, self.stage, both))
        p = self.predictor(z)
        with torch.no_grad():
            target = self.target_projector(pooled(self.target_backbone, self.stage, both))
        return {"z": list(z.chunk(2)), "p": list(p.chunk(2)), "target": list(target.chunk(2))}

    def loss(self, outputs: dict[str, list[Tensor]], targets: Tensor | None) -> Loss:
        (p1, p2), (t1, t2) = outputs["p"], outputs["target"]
        loss = regression_loss(p1, t2.detach()) + regression_loss(p2, t1.detach())
        z = F.normalize(torch.cat(outputs["z"]).detach().float(), dim=1)
        return Loss(loss, {"std": z.std(dim=0).mean(), "tau": self.tau.float()})

    @torch.no_grad()
    def after_step(self, backbone: Backbone, step: StepInfo) -> None:
        """The target moves toward the online network: tau * target + (1 - tau) * online."""
        tau = momentum(self.config.tau_base, step.progress)
        self.tau.fill_(tau)
        for online, target in ((backbone, self.target_backbone), (self.projector, self.target_projector)):
            for o, t in zip(online.parameters(), target.parameters(), strict=True):
                t.mul_(tau).add_(o.detach(), alpha=1.0 - tau)
