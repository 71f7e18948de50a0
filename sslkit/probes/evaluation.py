"""Train and evaluate probes on the stages of a trained (or randomly initialised) trunk.

The protocols are RotNet's (Gidaris, Singh, Komodakis, ICLR 2018, sec. 3.1): the trunk is
frozen and in eval mode unless fine-tuned, each probe trains with its own default (the paper's)
schedule, and the reported number is the LAST epoch's test accuracy. The test split never
chooses anything; a seeded validation split carved from the training images is recorded per
epoch and names ``best_layer`` (and the epoch, with ``select="val"``).

:func:`run_probes` reads top to bottom: :func:`plan_probes` (validate and decide the feature
path), then per layer group the cached features once, then :func:`probe_layer` per layer, then
:func:`probe_report`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..config import validate_section
from ..data.datasets import ImageData
from ..engine.distributed import resolve_device
from ..errors import ConfigError
from ..factory import create_probe
from ..interfaces import Backbone, Config, Probe
from ..plugins import Plugins
from .features import CachedFeatures, LiveFeatures, extract
from .settings import ProbeSettings
from .splits import ProbeSplits
from .training import ProbeObserver, predict, scores, train_probe
from .trunk import Trunk

FORMAT = "sslkit.probe/1"
FeatureCache = dict[tuple[str, str, int, str], Tensor]  # (split, layer, tiles, precision) -> features
MIRRORED = "-mirrored"
Sources = dict[str, CachedFeatures | LiveFeatures]


@dataclass
class ProbePlan:
    """What a probing call will do, decided (and validated) before any feature is computed."""

    settings: ProbeSettings
    trunk: Trunk
    device: torch.device
    backbone: Backbone  # on the device, channels_last where that is faster
    layers: list[str]
    probe_cls: type[Probe]
    probe_config: Config
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cached: bool  # one frozen-trunk pass (else the trunk runs per batch: augment / finetune)
    flip: bool  # cached: the mirrored training images' features too
    precision: str
    groups: list[list[str]] = field(default_factory=list)  # layers whose cached features fit together


def plan_probes(trunk: Trunk, splits: ProbeSplits, plugins: Plugins, settings: ProbeSettings) -> ProbePlan:
    """Validate the settings against the trunk and the probe, and decide the feature path."""
    device = resolve_device(settings.device)
    backbone = trunk.backbone.to(device)
    if device.type != "mps":  # as in training: measured 1.7x faster feature extraction on CPU (NIN)
        backbone = backbone.to(memory_format=torch.channels_last)
    layers = list(settings.layers) or [backbone.last_stage.name]
    if layers == ["all"]:
        layers = backbone.stage_names
    layers = [backbone.stage(name).name for name in layers]  # unknown names: one-line error
    probe_cls = plugins.probes.get(settings.probe)
    probe_config = validate_section(probe_cls.Config, settings.options, "probe.")
    if not probe_cls.trains and (settings.finetune or settings.augment):
        raise ConfigError(f"the '{settings.probe}' probe trains no weights; drop --finetune/--augment")
    if settings.finetune and len(layers) != 1:
        raise ConfigError("--finetune trains the trunk up to one layer: give a single --layer")
    cached = not settings.finetune and (not settings.augment or not probe_cls.trains)
    if settings.flip and not cached:
        raise ConfigError("--flip applies to cached features; --augment and --finetune already flip")
    stats = splits.train.stats()
    plan = ProbePlan(
        settings=settings,
        trunk=trunk,
        device=device,
        backbone=backbone,
        layers=layers,
        probe_cls=probe_cls,
        probe_config=probe_config,
        mean=tuple(trunk.mean or stats[0]),
        std=tuple(trunk.std or stats[1]),
        cached=cached,
        flip=settings.flip and probe_cls.trains,  # kNN trains nothing: nothing to augment
        precision=settings.precision if settings.precision != "auto" else _run_precision(trunk),
    )
    plan.groups = _layer_groups(plan, splits)
    return plan


def _layer_groups(plan: ProbePlan, splits: ProbeSplits) -> list[list[str]]:
    """Cached path: every layer's features from one trunk pass, unless together they exceed
    ``cache_gb`` (then one layer at a time). Live path: one layer at a time."""
    if not plan.cached:
        return [[n] for n in plan.layers]
    tiles = plan.settings.tiles
    per_sample = sum(math.prod(_stage_shape(plan, n, splits.train, tiles)) for n in plan.layers)
    total = per_sample * 4 * sum(len(d) for d in _extract_sets(plan, splits).values())
    return [plan.layers] if total <= plan.settings.cache_gb * 2**30 else [[n] for n in plan.layers]


def _extract_sets(plan: ProbePlan, splits: ProbeSplits) -> dict[str, ImageData]:
    """The splits a cached pass extracts: train, test, val, and the mirrored training images."""
    sets = {"train": splits.train, "test": splits.test, **({"val": splits.val} if splits.val is not None else {})}
    return {**sets, **({"train" + MIRRORED: splits.train} if plan.flip else {})}


def _stage_shape(plan: ProbePlan, layer: str, data: ImageData, tiles: int) -> tuple[int, ...]:
    images = data.images[:2]
    return LiveFeatures(
        plan.backbone, images, layer, plan.mean, plan.std, plan.device, augment=False, tiles=tiles
    ).shape


def cached_features(
    plan: ProbePlan,
    splits: ProbeSplits,
    layers: list[str],
    cache: FeatureCache,
    observer: ProbeObserver | None = None,
) -> dict[str, dict[str, Tensor]]:
    """{split: {layer: features}}, extracting (one trunk pass per split) only what ``cache`` lacks.
    A split named NAME + MIRRORED is split NAME's images flipped horizontally."""
    s, tiles = plan.settings, plan.settings.tiles
    for k, d in _extract_sets(plan, splits).items():
        missing = [n for n in layers if (k, n, tiles, plan.precision) not in cache]
        if missing:
            report = (lambda done, total, split=k: observer.on_features(split, done, total)) if observer else None
            feats = extract(
                plan.backbone,
                d.images,
                missing,
                plan.mean,
                plan.std,
                plan.device,
                s.eval_batch_size,
                tiles,
                k.endswith(MIRRORED),
                plan.precision,
                report,
            )
            for n, f in feats.items():
                cache[(k, n, tiles, plan.precision)] = f
    return {k: {n: cache[(k, n, tiles, plan.precision)] for n in layers} for k in _extract_sets(plan, splits)}


def _sources(plan: ProbePlan, splits: ProbeSplits, layer: str, feats: dict[str, dict[str, Tensor]]) -> Sources:
    """Where each split's probe inputs come from: cached features, or the trunk per batch."""
    sets = {"train": splits.train, "test": splits.test, **({"val": splits.val} if splits.val is not None else {})}
    if plan.cached:
        mirrored = feats["train" + MIRRORED][layer] if plan.flip else None
        return {k: CachedFeatures(feats[k][layer], mirrored if k == "train" else None) for k in sets}
    s = plan.settings
    return {
        k: LiveFeatures(
            plan.backbone,
            d.images,
            layer,
            plan.mean,
            plan.std,
            plan.device,
            augment=s.augment,
            finetune=s.finetune,
            tiles=s.tiles,
        )
        for k, d in sets.items()
    }


def probe_layer(
    plan: ProbePlan,
    splits: ProbeSplits,
    layer: str,
    feats: dict[str, dict[str, Tensor]],
    plugins: Plugins,
    observer: ProbeObserver | None = None,
) -> dict[str, Any]:
    """Train the probe on one layer and score it: the layer's entry of the report."""
    s, classes = plan.settings, splits.train.classes
    assert splits.train.labels is not None and splits.test.labels is not None
    trunk_state = copy.deepcopy(plan.backbone.state_dict()) if s.finetune else None
    src = _sources(plan, splits, layer, feats)
    torch.manual_seed(s.seed)
    probe = create_probe(s.probe, src["train"].shape, len(classes), plugins, **s.options).to(plan.device)
    val = (src["val"], splits.val.labels.to(plan.device)) if splits.val is not None else None  # type: ignore[union-attr]
    history, used_epoch = train_probe(
        probe,
        src["train"],
        splits.train.labels,
        s,
        plan.device,
        val=val,
        trunk=plan.backbone if s.finetune else None,
        observer=observer,
        layer=layer,
    )
    res: dict[str, Any] = {
        "feature_shape": list(src["train"].shape),
        "probe_parameters": sum(p.numel() for p in probe.parameters()),
        "history": history,
        "reported_epoch": used_epoch,
    }
    if val is not None:
        res["val"] = scores(predict(probe, val[0], s.eval_batch_size, val[1].device), val[1], classes)
        if history:
            best = max(history, key=lambda r: r["val_acc"])
            res["best_val_epoch"], res["best_val_acc"] = best["epoch"], best["val_acc"]
    test = scores(
        predict(probe, src["test"], s.eval_batch_size, splits.test.labels.device), splits.test.labels, classes
    )
    res.update(test_acc=test["acc"], per_class=test["per_class"], confusion=test["confusion"])
    if trunk_state is not None:  # fine-tuning changed the trunk: restore it for the caller
        plan.backbone.load_state_dict(trunk_state)
    return res


def run_probes(
    trunk: Trunk,
    splits: ProbeSplits,
    plugins: Plugins,
    settings: ProbeSettings,
    *,
    observer: ProbeObserver | None = None,
    feature_cache: FeatureCache | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``settings.probe`` on each of ``settings.layers`` (default: the last
    stage); returns the report written as ``probe.json``.

    ``feature_cache``: frozen features of this very trunk on these splits, by (split, layer),
    from earlier calls; what this call extracts is added (``sslkit reproduce`` runs several
    probes on one trunk). Used on the cached path when all layers fit ``cache_gb``."""
    plan = plan_probes(trunk, splits, plugins, settings)
    results: dict[str, Any] = {}
    for group in plan.groups:
        feats: dict[str, dict[str, Tensor]] = {}
        if plan.cached:
            cache = feature_cache if feature_cache is not None and len(plan.groups) == 1 else {}
            feats = cached_features(plan, splits, group, cache, observer)
        for layer in group:
            results[layer] = probe_layer(plan, splits, layer, feats, plugins, observer)
    return probe_report(plan, splits, results)


def _features_text(plan: ProbePlan) -> str:
    s = plan.settings
    if plan.cached:
        what = "cached (one trunk pass, " + (
            "and one over the mirrored training images: flip augmentation" if plan.flip else "no augmentation"
        )
        return what + (f"; {plan.precision} autocast)" if plan.precision != "fp32" else ")")
    return ("live: crop + flip per batch" if s.augment else "live, no augmentation") + (
        ", trunk fine-tuned" if s.finetune else ", trunk frozen (eval mode)"
    )


def _selection_text(settings: ProbeSettings, validation: str | None) -> str:
    if settings.select == "last":
        return (
            "test accuracy of the last epoch; the test split is never used for selection; "
            f"best_layer = highest accuracy on the validation split ({validation})"
        )
    return (
        f"weights of the epoch with the best accuracy on the validation split ({validation}); "
        "the test split is never used for selection"
    )


def probe_report(plan: ProbePlan, splits: ProbeSplits, results: dict[str, Any]) -> dict[str, Any]:
    """The report written as ``probe.json``: settings, data, per-layer results and the best layer."""
    with_val = [n for n in plan.layers if "val" in results[n]]
    best_layer = max(with_val, key=lambda n: results[n]["val"]["acc"]) if with_val else None
    return {
        "format": FORMAT,
        "trunk": plan.trunk.description,
        "backbone": plan.trunk.run_config["backbone"] if plan.trunk.run_config else None,
        "probe": plan.settings.probe,
        "probe_config": plan.probe_config.model_dump(mode="json"),
        "settings": plan.settings.model_dump(mode="json"),
        "features": _features_text(plan),
        "data": {
            "classes": splits.train.classes,
            "train_images": len(splits.train),
            "val_images": len(splits.val) if splits.val is not None else 0,
            "test_images": len(splits.test),
            **splits.notes,
        },
        "selection": _selection_text(plan.settings, splits.notes.get("validation")),
        "layers": results,
        "best_layer": best_layer,
    }


def _run_precision(trunk: Trunk) -> str:
    """The precision the trunk's run trained in (fp32 without a run): its features are read the
    same way (bf16 autocast about halves a CPU feature pass)."""
    return str((trunk.run_config or {}).get("precision", "fp32"))
