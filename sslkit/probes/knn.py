"""A k-nearest-neighbour probe: no gradient training, just a memory of labelled features, and the
weighted vote of :mod:`sslkit.knn` (Wu et al., CVPR 2018), the same as the online kNN monitor's.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from ..interfaces import Probe, ProbeConfig
from ..knn import knn_votes, unit


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
        return unit(features)

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
        c = self.config
        return knn_votes(
            self.bank, self.bank_labels, self.embed(features), self.num_classes, c.k, c.temperature, c.chunk
        )
