"""The RotNet evaluation protocol, which every first-party reproduction uses: which probes, on
which blocks, with which schedules (Gidaris, Singh, Komodakis, "Unsupervised Representation
Learning by Predicting Image Rotations", ICLR 2018, sec. 3.1, Tables 1 and 3).

A task plugin builds its recipes with :func:`rotnet_protocol` and registers them with
``register_recipes`` (the recipes live with their tasks; see the rotation, context and jigsaw
plugins). Presets: ``paper`` and ``repo`` are the full protocols (they differ in the pretext
schedule: 100 epochs x0.2 after 30/60/80 vs 200 epochs after 60/120/160); expect about 1.5 h
(paper) / 2.5 h (repo) of pretext training plus about 4 h of probes (augmented, 100 epochs each;
the supervised baseline 200 epochs) on one recent GPU. ``quick`` is the same protocol sized for a
CPU: NIN in bf16 over every non-test image at batch 128, probes on cached features (read in
bf16, as the run trained; the mirrored training images' too) for 8-10 epochs, kNN rows: about 14
minutes on 2 free cores.
"""

from __future__ import annotations

from typing import Any

from ..interfaces import ProbeJob, Recipe

MLP_SCHEDULE = {"epochs": 100, "milestones": [20, 40, 45]}
CONV_SCHEDULE = {"epochs": 100, "milestones": [35, 70, 85]}
SUPERVISED_SCHEDULE = {"epochs": 200, "milestones": [60, 120, 160]}
# The quick presets' probes on cached features.
QUICK_MLP_SCHEDULE = {"epochs": 10, "milestones": [5, 8, 9]}
QUICK_CONV_SCHEDULE = {"epochs": 8, "milestones": [4, 6, 7]}
# The weighted kNN monitor of self-supervised learning (Wu et al., CVPR 2018: cosine, k=20, votes
# exp(sim / 0.07)) on the flattened block map, the input Table 1's probes see. Global average
# pooling drops the spatial layout these blocks encode: on the quick run it gave 44.1 vs 36.2
# (random init), flattened 58.4 vs 43.9 (benchmarks/results/quick_sweep.json).
KNN = {"k": 20, "temperature": 0.07, "pool": "flatten"}


def rotnet_jobs(
    mlp: dict[str, Any],
    conv: dict[str, Any],
    sup: dict[str, Any],
    *,
    augment: bool,
    finetune: bool,
    blocks: int,
    sup_label: str = "supervised NIN, 3 blocks, end to end (Table 3)",
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
        ProbeJob("knn", "kNN (k=20, cosine, temperature votes)", "pretext", "knn", ("block2",), KNN, augment=False),
        ProbeJob("random/mlp", "random init + non-linear", "random", "mlp", ("block2",), mlp, augment=augment),
        ProbeJob("random/conv", "random init + conv (Table 3)", "random", "conv", ("block2",), conv, augment=augment),
        ProbeJob("random/knn", "random init + kNN", "random", "knn", ("block2",), KNN, augment=False),
        ProbeJob(
            "supervised",
            sup_label,
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


def rotnet_protocol(
    name: str,
    task: str,
    paper: dict[str, float],
    source: str,
    quick_width: float,
    quick_pretext: dict[str, Any],
    tiles: int = 1,
) -> dict[str, Recipe]:
    """The ``paper``, ``repo`` and ``quick`` presets of a reproduction on the RotNet protocol:
    4-block NIN (``quick``: at ``quick_width``, pretext run-config overrides ``quick_pretext``),
    the Table 1/3 probe rows and baselines, ``paper`` numbers keyed ``"<row>/<layer>"``."""
    full = dict(
        name=name,
        task=task,
        backbone={"name": "nin", "blocks": 4},
        supervised_backbone={"name": "nin", "blocks": 3},
        jobs=rotnet_jobs(MLP_SCHEDULE, CONV_SCHEDULE, SUPERVISED_SCHEDULE, augment=True, finetune=True, blocks=4),
        paper=paper,
        source=source,
        tiles=tiles,
    )
    quick_mlp, quick_conv = QUICK_MLP_SCHEDULE, QUICK_CONV_SCHEDULE
    quick_sup = {"epochs": 4, "milestones": [2, 3]}
    return {
        "paper": Recipe(preset="paper", task_preset="paper", pretext={}, **full),  # type: ignore[arg-type]
        "repo": Recipe(preset="repo", task_preset="repo", pretext={}, **full),  # type: ignore[arg-type]
        "quick": Recipe(
            name=name,
            task=task,
            preset="quick",
            task_preset=None,
            backbone={"name": "nin", "blocks": 4, "width": quick_width},
            supervised_backbone={"name": "nin", "blocks": 3, "width": quick_width},
            pretext=quick_pretext,
            jobs=rotnet_jobs(
                quick_mlp,
                quick_conv,
                quick_sup,
                augment=False,
                finetune=False,
                blocks=4,
                sup_label="supervised NIN, 3 blocks, end to end, 4 epochs of 6,000 images (CPU budget: not converged)",
            ),
            paper=paper,
            source=source,
            tiles=tiles,
            # Cached features overfit: the non-linear probe fit 99% of its training split within
            # 10 epochs (62% val). The mirrored training images' features (the flip of the
            # paper's crop + flip) cost one more pass and lifted rotation's block2 68.4 vs 65.5.
            cached_flip=True,
            # The supervised baseline trains end to end on the same number of labelled images as
            # the probes, so it stays a fair reference; epoch_size keeps its CPU cost bounded.
            probe_settings={"supervised_epoch_size": 6000},
        ),
    }


# The kNN monitor's protocol (Wu et al., CVPR 2018), as lightly and solo-learn report their CIFAR
# numbers: cosine, k = 20, votes exp(sim / 0.07), on the globally pooled stage.
POOLED_KNN = {"k": 20, "temperature": 0.07, "pool": "avg"}
# MAE's and MoCo v3's linear probe: BatchNorm without affine parameters before the classifier, so
# a trunk's features train at one learning rate whatever their scale (a random NIN's pooled last
# block is ~1e-2 in scale: a plain linear layer at lr 0.1 stayed at chance on it).
QUICK_LINEAR = {"epochs": 10, "milestones": [5, 8, 9], "norm": True}


def embedding_protocol(
    name: str,
    task: str,
    source: str,
    *,
    stage: str,
    backbone: dict[str, Any],
    pretext: dict[str, Any],
    task_preset: str | None = None,
) -> dict[str, Recipe]:
    """The ``quick`` preset of a reproduction for methods that learn an embedding (SimCLR, BYOL):
    kNN and a linear probe on the pooled ``stage``, each beside a random init of the same trunk
    probed at the same stage and normalisation, on one carved test split; the online kNN monitor
    on that stage during pretraining (its curve in ``curves.png``)."""
    label = "globally pooled"
    jobs = (
        ProbeJob(
            "knn",
            f"kNN (k=20, cosine, temperature votes), {label}",
            "pretext",
            "knn",
            (stage,),
            POOLED_KNN,
            augment=False,
        ),
        ProbeJob("random/knn", f"random init + kNN, {label}", "random", "knn", (stage,), POOLED_KNN, augment=False),
        ProbeJob("linear", f"linear probe, {label}", "pretext", "linear", (stage,), QUICK_LINEAR, augment=False),
        ProbeJob(
            "random/linear", f"random init + linear, {label}", "random", "linear", (stage,), QUICK_LINEAR, augment=False
        ),
    )
    quick = Recipe(
        name=name,
        task=task,
        preset="quick",
        task_preset=task_preset,
        backbone=backbone,
        pretext=pretext,
        supervised_backbone=backbone,
        jobs=jobs,
        paper={},
        source=source,
        cached_flip=True,
        monitor={"stage": stage, "bank": 5000, "queries": 1000},
    )
    return {"quick": quick}


def block2_jobs(mlp: dict[str, Any], conv: dict[str, Any]) -> tuple[ProbeJob, ...]:
    """RotNet's block2 rows on cached features (non-linear, conv, kNN), each beside its random-init
    twin: the rows of a recipe that compares several trunks (:class:`sslkit.interfaces.Arm`)."""
    return (
        ProbeJob("mlp", "non-linear probe", "pretext", "mlp", ("block2",), mlp, augment=False),
        ProbeJob("conv", "conv probe", "pretext", "conv", ("block2",), conv, augment=False),
        ProbeJob("knn", "kNN (k=20, cosine, temperature votes)", "pretext", "knn", ("block2",), KNN, augment=False),
        ProbeJob("random/mlp", "random init + non-linear", "random", "mlp", ("block2",), mlp, augment=False),
        ProbeJob("random/conv", "random init + conv", "random", "conv", ("block2",), conv, augment=False),
        ProbeJob("random/knn", "random init + kNN", "random", "knn", ("block2",), KNN, augment=False),
    )
