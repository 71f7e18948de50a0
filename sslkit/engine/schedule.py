"""The learning rate as a function of training progress, set before every step.

A pure function of (epoch, step) rather than a stateful torch scheduler (nanoGPT's ``get_lr``):
a resumed run, even mid-epoch, gets exactly the rate it would have had, with nothing to
checkpoint.

- ``step``: x ``gamma`` after each milestone epoch (Gidaris et al., ICLR 2018, sec. 3.1).
- ``cosine`` / ``linear``: per step from the full rate down to zero at the end of the last epoch.
  For runs of a few epochs, decaying smoothly to zero beats step decay at equal cost (Li, Yumer,
  Ramanan, "Budgeted Training", ICLR 2020).
- ``warmup_epochs``: a linear ramp from ~0 before any of the above (large batches).
"""

from __future__ import annotations

import math

import torch

from ..config import ScheduleConfig


def lr_factor(schedule: ScheduleConfig, epochs: int, epoch: int, step: int, steps: int) -> float:
    """Multiplier of the base learning rate for step ``step`` (of ``steps``) in epoch ``epoch``
    (0-based) of an ``epochs``-epoch run."""
    progress = epoch + step / steps  # in epochs, [0, epochs)
    if progress < schedule.warmup_epochs:
        return (progress + 1 / steps) / schedule.warmup_epochs
    if schedule.kind == "step":
        return schedule.gamma ** sum(epoch >= m for m in schedule.milestones)
    span = max(epochs - schedule.warmup_epochs, 1e-9)
    t = min(1.0, (progress - schedule.warmup_epochs) / span)
    if schedule.kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1 - t


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Every parameter group at ``lr`` (the trainer's optimizer has one group); returns it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
