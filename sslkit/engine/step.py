"""One forward pass of a task and its loss, as training, evaluation and the DDP probe step all do it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..interfaces import Loss, PretextTask, as_loss
from .precision import autocast


@dataclass
class StepOutput:
    """A step's loss (with its graph), metrics, correct count (or None) and samples averaged over."""

    loss: Loss
    correct: Tensor | None
    samples: int


def channels_last(inputs: Any, enabled: bool) -> Any:
    """4-d tensors (also inside lists, tuples and dicts) in channels_last memory format."""
    if not enabled:
        return inputs
    if isinstance(inputs, Tensor):
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(channels_last(x, enabled) for x in inputs)
    if isinstance(inputs, Mapping):
        return {k: channels_last(v, enabled) for k, v in inputs.items()}
    return inputs


def as_float(outputs: Any) -> Any:
    """Floating tensors (also in lists, tuples and dicts) as float32: losses are computed in
    float32 whatever the autocast precision of the forward pass."""
    if isinstance(outputs, Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(as_float(x) for x in outputs)
    if isinstance(outputs, Mapping):
        return {k: as_float(v) for k, v in outputs.items()}
    return outputs


def forward_loss(
    task: PretextTask,
    model: nn.Module,
    inputs: Any,
    targets: Tensor | None,
    *,
    device: torch.device,
    precision: str,
    memory_format: bool,
    images: int,
    name: str,
) -> StepOutput:
    """``model`` (the backbone + task, possibly DDP-wrapped or compiled) on ``inputs``, then the
    task's loss in float32 and its correct count; ``images``: this batch's images (the samples a
    task without targets averages over)."""
    with autocast(device, precision):
        outputs = model(channels_last(inputs, memory_format))
    loss = as_loss(task.loss(as_float(outputs), targets), name)
    correct = task.correct(outputs, targets)
    return StepOutput(loss, correct, targets.shape[0] if targets is not None else images)
