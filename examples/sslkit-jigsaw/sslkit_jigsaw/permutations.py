"""The permutation set of a jigsaw task: chosen greedily for maximal Hamming distance.

Noroozi and Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles", ECCV 2016, Algorithm 1: start from one random permutation of the 9 tiles, then
repeatedly add the permutation (of all 9! = 362,880) with the largest total Hamming distance to
those already chosen. Far-apart permutations make the puzzles unambiguous; the paper reports that
a larger average distance gives better features (Table 3).

``criterion="minimum"`` maximises the distance to the *closest* chosen permutation instead,
a common variant that guarantees a minimum distance between any two labels.

This runs once when a task is built (about 0.1 s for 100 permutations), in numpy, and the
result is stored in the task's checkpoint, so training never recomputes it.
"""

from __future__ import annotations

import functools
import itertools
from typing import Literal

import numpy as np
import torch

TILES = 9


@functools.lru_cache(maxsize=1)
def all_permutations(n: int = TILES) -> np.ndarray:
    """Every permutation of ``range(n)`` in lexicographic order, as read-only uint8 [n!, n].

    Memoised (a pure function of ``n``; the array is read-only): building the 9! table takes
    longer than the greedy selection itself, and tests build many tasks.
    """
    table = np.array(list(itertools.permutations(range(n))), dtype=np.uint8)
    table.flags.writeable = False
    return table


def hamming_permutations(
    count: int, seed: int = 0, criterion: Literal["average", "minimum"] = "average", n: int = TILES
) -> torch.Tensor:
    """``count`` permutations of ``range(n)`` as int64 [count, n], deterministic in ``seed``.

    Row ``i`` is the label-``i`` puzzle: position ``j`` of the shuffled grid shows tile
    ``perm[i, j]`` of the original grid.
    """
    perms = all_permutations(n)
    if not 1 <= count <= len(perms):
        raise ValueError(f"count must be in [1, {len(perms)}], got {count}")
    columns = np.ascontiguousarray(perms.T)  # [n, n!]: one fast row per tile position
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(perms)))]
    taken = np.zeros(len(perms), dtype=bool)
    score = np.zeros(len(perms), dtype=np.int32) if criterion == "average" else np.full(len(perms), n, dtype=np.int32)
    for _ in range(count - 1):
        last = chosen[-1]
        taken[last] = True
        distance = np.zeros(len(perms), dtype=np.int32)
        for pos in range(n):  # Hamming distance of every candidate to the last choice
            distance += columns[pos] != columns[pos, last]
        if criterion == "average":
            score += distance
        else:
            np.minimum(score, distance, out=score)
        # argmax returns the first maximum: ties break by lexicographic order, deterministically.
        chosen.append(int(np.argmax(np.where(taken, -1, score))))
    return torch.from_numpy(perms[chosen].astype(np.int64))


def hamming_stats(perms: torch.Tensor) -> tuple[float, int]:
    """(average, minimum) pairwise Hamming distance of a permutation set, as in the paper's Table 3."""
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    off = ~torch.eye(len(perms), dtype=torch.bool)
    return float(d[off].float().mean()), int(d[off].min())
