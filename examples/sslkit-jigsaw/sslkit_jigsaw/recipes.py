"""``sslkit reproduce jigsaw-cifar10 --preset quick``: jigsaw pretraining on CIFAR-10, then sslkit's
RotNet probe protocol (non-linear, conv and kNN probes on block2 against a random init of the same
trunk, on one carved test split), registered by this plugin through ``register_recipes`` like any
third party's recipe.

The paper (Noroozi and Favaro, ECCV 2016) reports no CIFAR-10 numbers, so the table has no paper
column values. ``quick`` is sized for 2 CPU cores from the measured example run (NIN width 0.5,
bf16, batch 128: 4 epochs over 8,000 images took 141 s and beat random init on every block2
probe): 6 epochs over every non-test image, about 10 minutes of pretraining before the probes.
"""

from __future__ import annotations

from sslkit.reproduce.protocols import rotnet_protocol

JIGSAW_QUICK = {
    "epochs": 6,
    "precision": "auto",  # bf16 where the CPU has it natively (the sizing below); fp32 elsewhere
    "data": {"subset": None, "holdout": 0.05, "batch_size": 128},
    "schedule": {"milestones": [5], "gamma": 0.2},
}

RECIPES = {
    "quick": rotnet_protocol(
        "jigsaw-cifar10",
        "jigsaw",
        {},
        "Noroozi and Favaro, ECCV 2016: no published CIFAR-10 numbers",
        quick_width=0.5,
        quick_pretext=JIGSAW_QUICK,
    )["quick"]
}
