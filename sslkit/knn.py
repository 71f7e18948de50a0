"""The weighted k-nearest-neighbour vote of self-supervised learning (Wu, Xiong, Yu, Lin,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018): cosine
similarity to every labelled feature, the ``k`` nearest vote for their class with weight
``exp(similarity / temperature)``. The kNN probe and the training loop's online kNN monitor both
vote here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def unit(features: Tensor) -> Tensor:
    """[N, ...] -> L2-normalised float [N, D]."""
    return F.normalize(features.flatten(1).float(), dim=1)


@torch.no_grad()
def knn_votes(
    bank: Tensor, bank_labels: Tensor, queries: Tensor, classes: int, k: int, temperature: float, chunk: int = 1024
) -> Tensor:
    """Unit features ``bank`` [N, D] with labels [N], unit ``queries`` [Q, D] -> per-class vote
    shares [Q, classes] (each row sums to 1); ``chunk`` queries per similarity matrix bound memory."""
    k = min(k, bank.shape[0])
    out = []
    for query in queries.split(chunk):
        sim, idx = (query @ bank.T).topk(k, dim=1)  # [q, k]
        weights = (sim / temperature).exp()
        votes = torch.zeros(query.shape[0], classes, device=query.device)
        votes.scatter_add_(1, bank_labels[idx], weights)
        out.append(votes / votes.sum(1, keepdim=True))
    return torch.cat(out)
