"""Mixed precision: one place that turns a run's ``precision`` into an autocast context."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """bf16 / fp16 autocast on ``device`` (fp16 needs a gradient scaler when training); fp32: none."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()
