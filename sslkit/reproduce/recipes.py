"""The reproduction recipes: what to train, which probes to run, and the paper's numbers.

RotNet: Gidaris, Singh, Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018; protocols and numbers from its sec. 3.1 (CIFAR-10 test accuracy, %).
Context: Doersch, Gupta, Efros, ICCV 2015; the paper reports no CIFAR-10
probe numbers, and neither does later work, so its table has no paper column values.

Presets: ``paper`` and ``repo`` are the full protocols (they differ in the pretext schedule:
100 epochs x0.2 after 30/60/80 vs 200 epochs after 60/120/160); expect about 1.5 h (paper) /
2.5 h (repo) of pretext training plus about 4 h of probes (augmented, 100 epochs each; the
supervised baseline 200 epochs) on one recent GPU. ``quick`` is the same protocol sized for a CPU:
NIN width 0.25, a 10,000-image pretext subset, 5 pretext epochs at batch 64, probes on cached
(unaugmented) features for 8-10 epochs: about 15 minutes on 2 free cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

MLP_SCHEDULE = {"epochs": 100, "milestones": [20, 40, 45]}
CONV_SCHEDULE = {"epochs": 100, "milestones": [35, 70, 85]}
SUPERVISED_SCHEDULE = {"epochs": 200, "milestones": [60, 120, 160]}


@dataclass(frozen=True)
class ProbeJob:
    """One table row: a probe on the pretrained trunk, a random one, or the supervised baseline."""

    key: str  # rows are "<key>/<layer>", also the keys of the paper's numbers
    label: str
    trunk: str  # "pretext" | "random" | "supervised"
    probe: str
    layers: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    finetune: bool = False
    augment: bool = True


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    preset: str
    task_preset: str | None  # the task's own preset for the pretext stage
    backbone: dict[str, Any]
    pretext: dict[str, Any]  # run-config overrides (nested) on top of the task preset
    supervised_backbone: dict[str, Any]
    jobs: tuple[ProbeJob, ...]
    paper: dict[str, float]
    source: str
    probe_settings: dict[str, Any] = field(default_factory=dict)
    default_data: str = "cifar10"


def _rotnet_jobs(
    mlp: dict[str, Any], conv: dict[str, Any], sup: dict[str, Any], *, augment: bool, finetune: bool, blocks: int
) -> tuple[ProbeJob, ...]:
    # Table 1 is one job over every block: with cached features the trunk runs once for all.
    jobs = [
        ProbeJob(
            "mlp",
            "non-linear probe (Table 1)",
            "pretext",
            "mlp",
            tuple(f"block{i}" for i in range(1, blocks + 1)),
            mlp,
            augment=augment,
        ),
        ProbeJob("conv", "conv probe (Table 3)", "pretext", "conv", ("block2",), conv, augment=augment),
        ProbeJob("random/mlp", "random init + non-linear", "random", "mlp", ("block2",), mlp, augment=augment),
        ProbeJob("random/conv", "random init + conv (Table 3)", "random", "conv", ("block2",), conv, augment=augment),
        ProbeJob(
            "supervised",
            "supervised NIN, 3 blocks, end to end (Table 3)",
            "supervised",
            "linear",
            ("block3",),
            {**sup, "finetune_lr_scale": 1.0},
            finetune=True,
            augment=True,
        ),
    ]
    if finetune:
        jobs += [
            ProbeJob(
                "mlp-finetune", "non-linear, fine-tuned (Table 3)", "pretext", "mlp", ("block2",), mlp, finetune=True
            ),
            ProbeJob(
                "conv-finetune", "conv, fine-tuned (Table 3)", "pretext", "conv", ("block2",), conv, finetune=True
            ),
        ]
    return tuple(jobs)


def _recipes(name: str, task: str, paper: dict[str, float], source: str) -> dict[str, Recipe]:
    full = dict(
        name=name,
        task=task,
        backbone={"name": "nin", "blocks": 4},
        supervised_backbone={"name": "nin", "blocks": 3},
        jobs=_rotnet_jobs(MLP_SCHEDULE, CONV_SCHEDULE, SUPERVISED_SCHEDULE, augment=True, finetune=True, blocks=4),
        paper=paper,
        source=source,
    )
    quick_mlp = {"epochs": 10, "milestones": [5, 8, 9]}
    quick_conv = {"epochs": 8, "milestones": [4, 6, 7]}
    quick_sup = {"epochs": 4, "milestones": [2, 3]}
    return {
        "paper": Recipe(preset="paper", task_preset="paper", pretext={}, **full),  # type: ignore[arg-type]
        "repo": Recipe(preset="repo", task_preset="repo", pretext={}, **full),  # type: ignore[arg-type]
        "quick": Recipe(
            name=name,
            task=task,
            preset="quick",
            task_preset=None,
            backbone={"name": "nin", "blocks": 4, "width": 0.25},
            supervised_backbone={"name": "nin", "blocks": 3, "width": 0.25},
            # SGD steps are what rotation prediction needs first: 3 epochs of 4,000 images at
            # batch 128 (87 steps) or of 6,000 at batch 64 (267 steps) reached 57-60% rotation
            # accuracy and features no better than random ones; this is ~740 steps.
            pretext={
                "epochs": 5,
                "data": {"subset": 10000, "holdout": 0.05, "batch_size": 64},
                "schedule": {"milestones": [4], "gamma": 0.2},
            },
            jobs=_rotnet_jobs(quick_mlp, quick_conv, quick_sup, augment=False, finetune=False, blocks=4),
            paper=paper,
            source=source,
            # The supervised baseline trains end to end on the same number of labelled images as
            # the probes, so it stays a fair reference; epoch_size keeps its CPU cost bounded.
            probe_settings={"supervised_epoch_size": 6000},
        ),
    }


RECIPES: dict[str, dict[str, Recipe]] = {
    "rotnet-cifar10": _recipes(
        "rotnet-cifar10", "rotation", ROTNET_PAPER, "Gidaris et al., ICLR 2018, Tables 1 and 3 (4-block NIN)"
    ),
    "context-cifar10": _recipes(
        "context-cifar10", "context", {}, "Doersch et al., ICCV 2015: no published CIFAR-10 numbers"
    ),
}
