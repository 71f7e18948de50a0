"""The reproduction-recipe interface: what ``sslkit reproduce NAME --preset P`` trains and probes.

A task plugin registers its recipes with ``register_recipes``: ``register("rotnet-cifar10",
{"paper": Recipe(...), "quick": Recipe(...)})`` (one :class:`Recipe` per preset). The runner
(:mod:`sslkit.reproduce`) trains the pretext run, runs every :class:`ProbeJob` row on the same
carved test split and writes the table beside the paper's numbers. A recipe with
:class:`Arm` s trains several pretext runs (a mix and each of its tasks) and probes each alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ProbeJob:
    """One table row: a probe on the pretrained trunk, a random one, or the supervised baseline."""

    key: str  # rows are "<key>/<layer>", also the keys of the paper's numbers
    label: str
    trunk: Literal["pretext", "random", "supervised"]
    probe: str
    layers: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    finetune: bool = False
    augment: bool = True


@dataclass(frozen=True)
class Arm:
    """One of several pretext runs a recipe compares on the same probes (each task of a mix, and
    the mix): its task and its run-config overrides on top of the recipe's ``pretext``."""

    task: str
    pretext: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """One preset of a reproduction: the pretext run, the probe rows and the paper's numbers."""

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
    tiles: int = 1  # probes on the pretext and random trunks read images as tiles x tiles patches
    # Cached (unaugmented) probes that train: also cache the mirrored training images' features,
    # each sample drawn from one of the two (ProbeSettings.flip).
    cached_flip: bool = False
    # monitor.knn options for the pretext run (its data: the reproduction's own); empty: no monitor.
    monitor: dict[str, Any] = field(default_factory=dict)
    # Several pretext runs (pretext/<task>/), each probed by every "pretext" job (rows
    # "<task>/<key>/<layer>"), the random-init and supervised rows once; empty: the one run of ``task``.
    arms: tuple[Arm, ...] = ()
