"""The RotNet reproduction on CIFAR-10 (``sslkit reproduce rotnet-cifar10``), registered by this plugin.

Gidaris, Singh, Komodakis, ICLR 2018; protocols and numbers from its sec. 3.1 (CIFAR-10 test
accuracy, %). The probe rows are sslkit's RotNet protocol (:mod:`sslkit.reproduce.protocols`).
"""

from __future__ import annotations

from sslkit.reproduce.protocols import rotnet_protocol

# RotNet, 4-block NIN (Tables 1 and 3).
ROTNET_PAPER: dict[str, float] = {
    "mlp/block1": 85.07,
    "mlp/block2": 89.06,
    "mlp/block3": 86.21,
    "mlp/block4": 61.73,
    "conv/block2": 91.16,
    "random/conv/block2": 72.50,
    "supervised/block3": 92.80,
    "mlp-finetune/block2": 91.73,
    "conv-finetune/block2": 92.17,
}

# Swept on 2 cores (benchmarks/quick_sweep.py, benchmarks/results/quick_sweep.json): width 0.5 in
# bf16 autocast (2x fp32's speed on this CPU, the same held-out accuracy) over every non-test
# image beat width 0.25 in fp32 on 10,000 images for the same wall time. Block2 margins over
# random init, non-linear / conv / kNN: 4 epochs +6.1 / +11.9 / +14.5 (was +4.3 / +7.0 / none);
# batch 64 (twice the steps, same compute) no better; a fifth epoch +7.0 / +12.8 / +15.0, which
# fits since the probes share one feature extraction per trunk (channels_last, 1.7x faster).
# A cosine decay to zero instead of the step: +7.7 / +13.1 / +14.6 (no gain). The probes' flip
# (Recipe.cached_flip, set by the quick protocol) on the same trunk: +9.3 / +13.1 / +15.1 in
# 851 s, feature pass in bf16.
ROTNET_QUICK = {
    "epochs": 5,
    "precision": "auto",  # bf16 where the CPU has it natively (the sizing below); fp32 elsewhere
    "data": {"subset": None, "holdout": 0.05, "batch_size": 128},
    "schedule": {"milestones": [4], "gamma": 0.2},
}

RECIPES = rotnet_protocol(
    "rotnet-cifar10",
    "rotation",
    ROTNET_PAPER,
    "Gidaris et al., ICLR 2018, Tables 1 and 3 (4-block NIN)",
    quick_width=0.5,
    quick_pretext=ROTNET_QUICK,
)
