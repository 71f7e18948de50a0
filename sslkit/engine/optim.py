"""The optimiser a run trains with: its parameter groups and SGD, AdamW or LARS.

Groups: every trainable parameter (``requires_grad``; frozen modules such as an EMA target are
left out), split by weight decay and learning-rate multiplier:

- ``optim.exclude_norm_bias``: no weight decay (and, with LARS, no trust-ratio scaling) on
  biases and normalisation weights, i.e. every parameter of one dimension, as SimCLR's and
  BYOL's code do;
- ``optim.lr_multipliers``: ``{"task.predictor": 10}`` scales the rate of every parameter
  under that module (the longest matching prefix wins); the schedule sets each group's rate to
  base rate x schedule factor x multiplier every step.

LARS (You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks", 2017): SGD with
momentum whose per-parameter step is scaled by the trust ratio ``eta * ||w|| / ||g + wd * w||``,
as in SimCLR's LARS optimiser (Chen et al. 2020); parameters of groups with ``lars=False``
(biases and norms when excluded) take plain momentum SGD steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..config import OptimConfig
from ..errors import ConfigError


def _multiplier(name: str, multipliers: Mapping[str, float]) -> float:
    matches = [p for p in multipliers if name == p or name.startswith(p + ".")]
    return multipliers[max(matches, key=len)] if matches else 1.0


def param_groups(model: nn.Module, o: OptimConfig) -> list[dict[str, Any]]:
    """The optimiser's groups, in parameter order; one group when nothing splits them (so a run
    without exclusions or multipliers steps exactly as a plain ``SGD(model.parameters())``)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    unknown = [p for p in o.lr_multipliers if not any(n == p or n.startswith(p + ".") for n in names)]
    if unknown:
        raise ConfigError(
            f"optim.lr_multipliers names '{unknown[0]}', which holds no trainable parameter; "
            "use a module path such as task.predictor or backbone.blocks.block1"
        )
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:  # frozen (an EMA target): no optimiser state, no updates
            continue
        plain = o.exclude_norm_bias and p.ndim <= 1  # biases and normalisation weights
        key = (_multiplier(name, o.lr_multipliers), plain)
        group = groups.setdefault(
            key,
            {"params": [], "lr_scale": key[0], "weight_decay": 0.0 if plain else o.weight_decay, "lars": not plain},
        )
        group["params"].append(p)
    return list(groups.values())


class LARS(torch.optim.Optimizer):
    """Momentum SGD with layer-wise trust ratios (see the module docstring); a group with
    ``lars=False`` steps as plain momentum SGD."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "nesterov": nesterov}
        defaults["lars"] = True
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group)
        return loss

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        d = grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else grad.clone()
        if group["lars"]:
            w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
            # A tensor expression, not a Python branch: no read-back from the device per parameter.
            trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, torch.ones_like(w_norm))
            d.mul_(trust)
        state = self.state[p]
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(p)
        buf.mul_(group["momentum"]).add_(d, alpha=group["lr"])  # v = m v + lr * scaled gradient
        p.sub_(buf.mul(group["momentum"]).add_(d, alpha=group["lr"]) if group["nesterov"] else buf)


def make_optimizer(model: nn.Module, o: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    """The configured optimiser over :func:`param_groups`; fused kernels on CUDA (its gradient
    scaler then checks for infinities without a read-back per step)."""
    groups = param_groups(model, o)
    if not groups:
        raise ConfigError("the model has no trainable parameters (every parameter has requires_grad=False)")
    fused = True if device.type == "cuda" else None
    if o.name == "sgd":
        nesterov = o.nesterov and o.momentum > 0
        return torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, nesterov=nesterov, weight_decay=o.weight_decay, fused=fused
        )
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, fused=fused)
    return LARS(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, eta=o.lars_eta, nesterov=o.nesterov)


def set_group_lrs(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Every group at ``lr`` times its multiplier; returns ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
