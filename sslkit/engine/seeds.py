"""Every random draw of a run comes from a generator seeded by a tuple (seed, epoch, step, what[,
rank]), so any step replays identically: a run killed mid-epoch resumes at the step it stopped and
ends with the metrics of an uninterrupted run."""

from __future__ import annotations

import torch


def seed_of(*parts: int) -> int:
    """A 63-bit seed from a tuple, stable across runs and processes."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def generator(device: torch.device, *parts: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_of(*parts))


# What each draw is for: the last part of its seed tuple (kept stable: checkpoints replay them).
CROP, MODULE, PRETEXT, ORDER = 1, 2, 3, 3
EVAL, PRECISE_BN, EVAL_VIEWS, PRECISE_BN_VIEWS = 7, 8, 9, 10
