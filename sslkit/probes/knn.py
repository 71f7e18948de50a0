"""A k-nearest-neighbour probe: no gradient training, just a memory of labelled features.

Wu, Xiong, Yu, Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
CVPR 2018 (the weighted kNN monitor used across self-supervised learning): cosine similarity
to every training feature, the ``k`` nearest vote for their class with weight
``exp(similarity / temperature)``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from ..interfaces import Probe, ProbeConfig


class KNNConfig(ProbeConfig):
    epochs: int = Field(0, ge=0, le=0, description="kNN trains no weights")
    k: int = Field(20, ge=1, description="neighbours that vote")
    temperature: float = Field(0.07, gt=0, description="vote weight exp(similarity / temperature)")
    pool: Literal["avg", "flatten"] = Field("avg", description="global average pool, or flatten the map")
    chunk: int = Field(1024, ge=1, description="queries per similarity matrix (bounds memory)")


class KNNProbe(Probe):
    """Call :meth:`fit` with the training features and labels, then :meth:`forward` returns
    per-class vote scores (normalised to sum to 1) for query features."""

    Config = KNNConfig
    trains = False  # fit() remembers the features; no gradient steps

    def __init__(self, config: KNNConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(config, feature_shape, num_classes)
        self.config: KNNConfig = config
        self.register_buffer("bank", torch.empty(0), persistent=True)
        self.register_buffer("bank_labels", torch.empty(0, dtype=torch.int64), persistent=True)

    def embed(self, features: Tensor) -> Tensor:
        """[B, ...] -> L2-normalised [B, D] (average pooled over space unless pool='flatten')."""
        if self.config.pool == "avg" and features.dim() == 4:
            features = features.mean(dim=(2, 3))
        return F.normalize(features.flatten(1).float(), dim=1)

    @torch.no_grad()
    def fit(self, features: Tensor, labels: Tensor) -> None:
        self.bank = self.embed(features)
        self.bank_labels = labels.to(self.bank.device, torch.int64)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The bank's size is only known once fitted: take the saved shape instead of failing.
        for name in ("bank", "bank_labels"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def forward(self, features: Tensor) -> Tensor:
        if self.bank.numel() == 0:
            raise RuntimeError("KNNProbe.fit(features, labels) must be called before forward")
        k = min(self.config.k, self.bank.shape[0])
        out = []
        for query in self.embed(features).split(self.config.chunk):
            sim, idx = (query @ self.bank.T).topk(k, dim=1)  # [Q, k]
            weights = (sim / self.config.temperature).exp()
            votes = torch.zeros(query.shape[0], self.num_classes, device=query.device)
            votes.scatter_add_(1, self.bank_labels[idx], weights)
            out.append(votes / votes.sum(1, keepdim=True))
        return torch.cat(out)
