"""``sslkit reproduce simclr-cifar10 --preset quick``: SimCLR pretraining on CIFAR-10, then kNN and
linear probes on the pooled last block against a random init of the same trunk (one carved test
split), with the online kNN monitor per epoch. Registered by this plugin like any third party's.

No published figures exist for SimCLR on NIN or on 2 CPU cores (lightly's docs give 84.7% kNN
for ResNet-18 after 200 epochs on one GPU); ``quick`` gives the first ones, sized for 15 minutes
of pretraining on 2 CPU cores: 9 epochs of ~93 s on an AVX2 EPYC, evaluations included (837 s
measured; 12 epochs took 17.5 minutes there).
"""

from __future__ import annotations

from sslkit.reproduce.protocols import embedding_protocol

SIMCLR_QUICK = {
    "epochs": 9,
    "precision": "fp32",
    "data": {"subset": None, "holdout": 0.05, "batch_size": 256},
    "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "exclude_norm_bias": True},
    "schedule": {"kind": "cosine", "warmup_epochs": 1},
}

RECIPES = embedding_protocol(
    "simclr-cifar10",
    "simclr",
    "Chen et al., ICML 2020: no published NIN or CPU numbers",
    stage="block4",
    backbone={"name": "nin", "blocks": 4, "width": 0.25},
    pretext=SIMCLR_QUICK,
    task_preset="default",
)
