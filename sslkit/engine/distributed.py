"""Device choice and torch.distributed set-up (``torchrun`` sets RANK/WORLD_SIZE/LOCAL_RANK)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class Placement:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_gpu(local_rank: int) -> int:
    """The CUDA ordinal of the process with this ``LOCAL_RANK``, among the GPUs it can see.

    torchrun on one node shows every process all the node's GPUs: rank r takes GPU r. SLURM (and
    other launchers) often give each process its own ``CUDA_VISIBLE_DEVICES`` instead, so every
    rank sees one GPU, ordinal 0, and ``cuda:{LOCAL_RANK}`` would be an invalid ordinal. Taking
    ``LOCAL_RANK`` modulo the visible count is right in both cases.
    """
    count = torch.cuda.device_count()
    return local_rank % count if count else local_rank


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks cuda > mps > cpu; ``cuda`` under torchrun means this process's GPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_gpu(local_rank))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device '{spec}': not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device '{spec}': CUDA is not available here; use --device auto or cpu")
        if device.index is None:
            device = torch.device("cuda", local_gpu(local_rank))
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device '{spec}': MPS is not available here; use --device auto or cpu")
    return device


def setup(device_spec: str, timeout_minutes: float = 30.0) -> Placement:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec, local_rank)
    if world <= 1:
        return Placement(device)
    if device.type == "cuda" and device.index != local_gpu(local_rank):
        # Every process asked for the same GPU: they would all train on it, serialised.
        raise ConfigError(
            f"--device '{device_spec}' under torchrun: each of the {world} processes uses the GPU of its "
            f"LOCAL_RANK; pass --device cuda (or auto), not one GPU for all"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Rank 0 evaluates and checkpoints while the others wait in a barrier: the timeout is
        # explicit (NCCL's default of 10 minutes is too short for a big held-out split).
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=timeout_minutes)
        )
    return Placement(device, dist.get_rank(), dist.get_world_size())


def teardown(placement: Placement) -> None:
    if placement.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
