"""Rotation, context prediction and their mix on CIFAR-10 (``sslkit reproduce multitask-cifar10``).

Doersch & Zisserman, "Multi-task Self-Supervised Visual Learning", ICCV 2017: one trunk trained
on several self-supervised tasks at once (a head per task, the losses added) learnt better
features than any of its tasks alone on their benchmarks (ImageNet, PASCAL VOC, NYU depth, with
ResNet-101). They report no CIFAR-10 numbers, so the table has no paper column values: it
checks their claim on sslkit's RotNet yardstick instead. Three pretext runs, alike in everything
but the task (backbone, data, crop, schedule, optimiser, seed): ``rotation``, ``context`` and
``rotation+context``; each trunk's block2 is probed (non-linear, conv, kNN) beside one random
init of the same architecture, on the same carved test split.

Choices, each the same for the three runs:
- the engine's crop without zero padding (``data.crop_padding=0``, context's own preset): a
  padded border inside an outer patch would tell its side of the grid, and the mix shares one
  crop between its tasks;
- context's options from its quick preset (no green-magenta projection or per-patch
  normalisation on 32-px images, down-and-up sampling of 2 patches in 3);
- every probe reads whole images (context-cifar10 probes its trunk on 4 x 4 tiles of 8 px:
  here one yardstick serves the three trunks and the random init), so the mix keeps its
  backbone's BatchNorm statistics to rotation's whole images (``task.bn_stats=rotation``), not
  an average with context's 8-px patches;
- as many steps for each run (the mix costs about rotation's step plus context's).
"""

from __future__ import annotations

from ..interfaces import Arm, Recipe
from .protocols import QUICK_CONV_SCHEDULE, QUICK_MLP_SCHEDULE, block2_jobs

NAME = "multitask-cifar10"
SOURCE = "Doersch & Zisserman, ICCV 2017: no published CIFAR-10 numbers"
CONTEXT_OPTIONS = {"chromatic": "none", "patch_norm": "none", "resample": 0.66}

# Sized for 2 cores without native bf16 (an AVX2-only EPYC: fp32, as precision=auto picks there)
# within 15 minutes: 2 epochs of 10,000 images for each of the three runs (the mix costs about
# rotation's step plus context's), then 4 trunks x 3 block2 probes on cached features; 731 s
# measured (195 + 34 + 240 s of pretraining). Batch 96, not RotNet's 128: the same images in
# 196 steps instead of 148, the budget's lever. With 128 the mix trailed rotation alone on two
# probes (-0.12 non-linear, -0.18 kNN, within noise); with 3 epochs at 128 it led on all three,
# but took 1069 s.
MIX_QUICK = {
    "epochs": 2,
    "precision": "auto",
    "data": {"subset": 10_000, "holdout": 0.05, "batch_size": 96, "crop_padding": 0},
    "schedule": {"milestones": [1], "gamma": 0.2},
}

ARMS = (
    Arm("rotation"),
    Arm("context", {"task": CONTEXT_OPTIONS}),
    Arm("rotation+context", {"task": {"context": CONTEXT_OPTIONS, "bn_stats": "rotation"}}),
)

BACKBONE = {"name": "nin", "blocks": 4, "width": 0.25}

RECIPES = {
    "quick": Recipe(
        name=NAME,
        task="rotation+context",
        preset="quick",
        task_preset=None,
        backbone=BACKBONE,
        pretext=MIX_QUICK,
        supervised_backbone=BACKBONE,
        jobs=block2_jobs(QUICK_MLP_SCHEDULE, QUICK_CONV_SCHEDULE),
        paper={},
        source=SOURCE,
        cached_flip=True,
        arms=ARMS,
    )
}
