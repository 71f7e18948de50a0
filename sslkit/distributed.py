"""Collectives a task needs inside its loss, safe to call in a single process too.

``all_gather_with_grad`` gathers a tensor from every process *with* gradients, for losses that
compare every sample with the whole global batch (SimCLR's negatives: Chen et al. 2020, sec. 2.2,
"global BN" and gathered negatives); ``torch.distributed.all_gather`` returns tensors that carry
no gradient back to the other processes.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import Tensor

# Set while one process works alone (the main process evaluating held-out images while the
# others wait): collectives would wait forever for processes that never join. Context-local,
# so it cannot leak out of the block that sets it.
_ALONE: contextvars.ContextVar[bool] = contextvars.ContextVar("sslkit_alone", default=False)


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Inside the block this process acts as a run of one: :func:`world_size` is 1 and
    :func:`all_gather_with_grad` returns its input (the engine's evaluation on the main process)."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


def world_size() -> int:
    """Processes in the run (1 without a process group, or inside :func:`alone`)."""
    if _ALONE.get() or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def rank() -> int:
    """This process's rank (0 without a process group, or inside :func:`alone`)."""
    if _ALONE.get() or not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank()


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Every process's loss depends on this process's rows: their gradient is the sum over
        # processes (the engine's DDP then averages over processes, as for any parameter).
        grad = grad.contiguous()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        return grad[dist.get_rank() * n : (dist.get_rank() + 1) * n]


def all_gather_with_grad(x: Tensor) -> Tensor:
    """[n, ...] on every process -> [world * n, ...], rank order, differentiable with respect to
    every process's rows; ``x`` itself in a single process. Every process must pass the same n."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
