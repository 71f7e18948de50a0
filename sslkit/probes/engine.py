"""Train and evaluate probes on the stages of a trained (or randomly initialised) trunk.

The protocols are RotNet's (Gidaris, Singh, Komodakis, ICLR 2018, sec. 3.1): the trunk is
frozen and in eval mode unless fine-tuned, each probe trains with its own default (the paper's)
schedule, and the reported number is the LAST epoch's test accuracy. The test split never
chooses anything; a seeded validation split carved from the training images is recorded per
epoch and names ``best_layer`` (and the epoch, with ``select="val"``).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from ..config import RunConfig, validate_section
from ..data.datasets import ImageData
from ..data.opener import load_dataset
from ..engine.checkpoint import write_json
from ..engine.distributed import resolve_device
from ..errors import ConfigError, SSLKitError
from ..interfaces import Backbone, Probe
from ..plugins import Plugins
from .features import CachedFeatures, LiveFeatures, extract
from .splits import ProbeSplits, make_splits

log = logging.getLogger(__name__)

FORMAT = "sslkit.probe/1"
EpochHook = Callable[[str, dict[str, Any]], None]


class ProbeSettings(BaseModel):
    """How to probe: which probe, where, and on what data (everything but the trunk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str = "mlp"
    options: dict[str, Any] = Field(default_factory=dict, description="the probe's Config overrides")
    layers: tuple[str, ...] = ()
    finetune: bool = False
    augment: bool = Field(False, description="crop + flip per batch (the paper's protocol); off: cached features")
    flip: bool = Field(
        False,
        description="cached features: also cache the mirrored training images' and train each sample on one of "
        "the two at random (the flip of the paper's crop + flip; one more trunk pass over the training split)",
    )
    labels_per_class: int | None = Field(None, ge=1)
    epoch_size: int | None = Field(None, ge=1, description="samples per epoch (default: the full training split)")
    val_fraction: float = Field(0.1, ge=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5, description="carved when the data has no test split")
    select: Literal["last", "val"] = "last"
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = Field(256, ge=1)
    cache_gb: float = Field(4.0, gt=0, description="above this, features are extracted one layer at a time")
    max_steps: int | None = Field(None, ge=1, description="cap on steps per epoch (smoke tests)")
    tiles: int = Field(
        1, ge=1, description="read each image as tiles x tiles patches and stitch the maps (patch-trained trunks)"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="cached features: autocast of the trunk pass; auto: the precision the run trained in"
    )


@dataclass
class Trunk:
    backbone: Backbone
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    description: str
    run_config: dict[str, Any] | None
    image_size: int | None = None


def load_trunk(
    run: str | Path | None,
    plugins: Plugins,
    *,
    random_init: bool = False,
    backbone: str | None = None,
    backbone_options: dict[str, Any] | None = None,
    seed: int = 0,
) -> Trunk:
    """The trunk of a run (its trained weights, or a fresh init of its architecture with
    ``random_init``), or with no run a freshly initialised ``backbone``."""
    from ..run import build_backbone, describe, load_run

    loaded = load_run(run, plugins) if run is not None else None
    run_config = RunConfig.model_validate(loaded.config).model_dump(mode="json") if loaded else None
    if backbone is not None:
        spec = {"name": backbone, **(backbone_options or {})}
    elif run_config is not None:
        spec = {**run_config["backbone"], **(backbone_options or {})}
    else:
        raise ConfigError("no trunk: give a run folder, or --random-init with --backbone NAME")
    if loaded is not None and not random_init and spec != run_config["backbone"]:  # type: ignore[index]
        raise ConfigError("--backbone/--set backbone.* change a trained run's architecture; add --random-init")
    if loaded is not None and not random_init:
        model, what = loaded.backbone, describe(loaded)
    else:
        torch.manual_seed(seed)
        model, what = build_backbone(spec, plugins), f"random init: {spec['name']} (seed {seed})"
    data_cfg = (run_config or {}).get("data", {})
    return Trunk(
        model, _tuple(data_cfg.get("mean")), _tuple(data_cfg.get("std")), what, run_config, data_cfg.get("image_size")
    )


def _tuple(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(v)


def load_splits(
    data: str, test_data: str | None, plugins: Plugins, settings: ProbeSettings, image_size: int | None = None
) -> ProbeSplits:
    """Training data by name or folder; test data from ``test_data``, else the dataset's ``test``
    split when it has one, else carved (seeded) from the training data."""
    train = load_dataset(data, plugins, "train", image_size)
    test: ImageData | None = None
    if test_data is not None:
        test = load_dataset(test_data, plugins, "test", image_size)
    elif data in plugins.datasets:
        try:
            test = load_dataset(data, plugins, "test", image_size)
        except SSLKitError as exc:  # a dataset without a test split: carve one below
            log.info("%s has no test split (%s); carving one", data, exc)
    return make_splits(
        train,
        test,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        labels_per_class=settings.labels_per_class,
        seed=settings.seed,
    )


def _epoch_order(n: int, size: int, generator: torch.Generator) -> Tensor:
    """``size`` indices: back-to-back permutations of range(n) (fixed-size epochs, Figure 5b)."""
    reps = math.ceil(size / n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])[:size]


@torch.no_grad()
def predict(probe: Probe, source: Any, batch_size: int, device: torch.device | str = "cpu") -> Tensor:
    """The probe's predicted classes for every sample of ``source``, on ``device`` (where the
    labels they are compared with live; kept on the probe's device until the end: one copy)."""
    probe.eval()
    out = []
    for start in range(0, len(source), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(source)))
        out.append(probe(source.batch(idx, None, train=False)).argmax(1))
    return torch.cat(out).to(device)


def accuracy(pred: Tensor, labels: Tensor) -> float:
    """Fraction of ``pred == labels``; both on one device (a mismatch would crash only on a GPU)."""
    if pred.device != labels.device:
        raise ValueError(f"predictions on {pred.device}, labels on {labels.device}: compare on one device")
    return float((pred == labels).double().mean())


def scores(pred: Tensor, labels: Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Overall and per-class accuracy (paper Table 9) and the confusion matrix [true][predicted]."""
    k = len(classes)
    pred, labels = pred.cpu(), labels.cpu()  # the report is plain numbers: one copy, then host math
    confusion = torch.bincount(labels * k + pred, minlength=k * k).view(k, k)
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    return {
        "acc": float((pred == labels).double().mean()),
        "per_class": {c: float(a) for c, a in zip(classes, per_class.tolist(), strict=True)},
        "confusion": confusion.tolist(),
    }


def train_probe(
    probe: Probe,
    source: Any,
    labels: Tensor,
    settings: ProbeSettings,
    device: torch.device,
    *,
    val: tuple[Any, Tensor] | None = None,
    trunk: Backbone | None = None,
    on_epoch: EpochHook | None = None,
    layer: str = "",
) -> tuple[list[dict[str, Any]], int]:
    """SGD on the probe (and the trunk at ``lr * finetune_lr_scale`` when fine-tuning) with the
    probe's schedule. Returns (history, the epoch whose weights ``probe`` now holds)."""
    cfg = probe.config
    if hasattr(probe, "fit"):  # non-parametric (kNN): remember the training features
        # Probe does not declare fit() (only non-parametric probes have it), hence the cast.
        cast(Any, probe).fit(source.batch(torch.arange(len(source)), None, train=False), labels.to(device))
        return [], 0
    groups = [{"params": list(probe.parameters()), "lr": cfg.lr}]
    if settings.finetune and trunk is not None:
        groups.append({"params": list(trunk.parameters()), "lr": cfg.lr * cfg.finetune_lr_scale})
    opt = torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma)
    n = len(source)
    size = settings.epoch_size or n
    batch = min(cfg.batch_size, size)
    steps = max(1, size // batch)  # drop the last partial batch (BatchNorm in the heads)
    if settings.max_steps:
        steps = min(steps, settings.max_steps)
    gen = torch.Generator().manual_seed(settings.seed)
    aug_gen = torch.Generator(device=device).manual_seed(settings.seed + 1)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, Tensor] | None] = (-1.0, cfg.epochs, None)
    labels = labels.to(device)
    source_device = getattr(source, "index_device", torch.device("cpu"))
    for epoch in range(cfg.epochs):
        order = _epoch_order(n, steps * batch, gen)
        # Indices move to the devices once per epoch, not once per step; the sums stay on the
        # device and are read once per epoch (a float() per step would wait for the GPU each time).
        order_src, order_dev = order.to(source_device), order.to(device)
        probe.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for step in range(steps):
            span = slice(step * batch, (step + 1) * batch)
            logits = probe(source.batch(order_src[span], aug_gen, train=True))
            y = labels[order_dev[span]]
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * batch
            correct += (logits.detach().argmax(1) == y).sum()
        record = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": float(loss_sum) / (steps * batch),
            "train_acc": int(correct) / (steps * batch),
        }
        sched.step()
        if val is not None:
            record["val_acc"] = accuracy(predict(probe, val[0], settings.eval_batch_size, val[1].device), val[1])
            if settings.select == "val" and record["val_acc"] > best[0]:
                best = (record["val_acc"], epoch + 1, copy.deepcopy(probe.state_dict()))
        history.append(record)
        if on_epoch is not None:
            on_epoch(layer, record)
    if settings.select == "val" and best[2] is not None:
        probe.load_state_dict(best[2])
        return history, best[1]
    return history, cfg.epochs


FeatureCache = dict[tuple[str, str, int, str], Tensor]  # (split, layer, tiles, precision) -> features
MIRRORED = "-mirrored"


def _features(
    backbone: Backbone,
    sets: dict[str, ImageData],
    layers: list[str],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int,
    tiles: int,
    precision: str,
    cache: FeatureCache,
) -> dict[str, dict[str, Tensor]]:
    """{split: {layer: features}}, extracting (one trunk pass per split) only what ``cache`` lacks.
    A split named NAME + MIRRORED is split NAME's images flipped horizontally."""
    for k, d in sets.items():
        missing = [n for n in layers if (k, n, tiles, precision) not in cache]
        if missing:
            mirror = k.endswith(MIRRORED)
            feats = extract(backbone, d.images, missing, mean, std, device, batch_size, tiles, mirror, precision)
            for n, f in feats.items():
                cache[(k, n, tiles, precision)] = f
    return {k: {n: cache[(k, n, tiles, precision)] for n in layers} for k in sets}


def run_probes(
    trunk: Trunk,
    splits: ProbeSplits,
    plugins: Plugins,
    settings: ProbeSettings,
    *,
    on_epoch: EpochHook | None = None,
    feature_cache: FeatureCache | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``settings.probe`` on each of ``settings.layers`` (default: the last
    stage); returns the report written as ``probe.json``.

    ``feature_cache``: frozen features of this very trunk on these splits, by (split, layer),
    from earlier calls; what this call extracts is added (``sslkit reproduce`` runs several
    probes on one trunk). Used on the cached path when all layers fit ``cache_gb``."""
    device = resolve_device(settings.device)
    backbone = trunk.backbone.to(device)
    if device.type != "mps":  # as in training: measured 1.7x faster feature extraction on CPU (NIN)
        backbone = backbone.to(memory_format=torch.channels_last)
    layers = list(settings.layers) or [backbone.last_stage.name]
    if layers == ["all"]:
        layers = backbone.stage_names
    layers = [backbone.stage(name).name for name in layers]  # unknown names: one-line error
    probe_cls = plugins.probes.get(settings.probe)
    probe_cfg = validate_section(probe_cls.Config, settings.options, "probe.")
    nonparametric = hasattr(probe_cls, "fit")
    if nonparametric and (settings.finetune or settings.augment):
        raise ConfigError(f"the '{settings.probe}' probe trains no weights; drop --finetune/--augment")
    stats = splits.train.stats()
    mean, std = trunk.mean or stats[0], trunk.std or stats[1]
    if settings.finetune:
        layers = layers[:1] if len(layers) == 1 else _one_layer_error()
    classes = splits.train.classes
    assert splits.train.labels is not None and splits.test.labels is not None
    cached = not settings.finetune and (not settings.augment or nonparametric)
    sets = {"train": splits.train, "test": splits.test, **({"val": splits.val} if splits.val is not None else {})}
    if settings.flip and not cached:
        raise ConfigError("--flip applies to cached features; --augment and --finetune already flip")
    flip = settings.flip and not nonparametric  # kNN trains nothing: nothing to augment
    precision = settings.precision if settings.precision != "auto" else _run_precision(trunk)
    extract_sets = {**sets, **({"train" + MIRRORED: splits.train} if flip else {})}

    # Cached path: every layer's features in one trunk pass, unless they would not fit.
    feats: dict[str, dict[str, Tensor]] = {}
    if cached:
        per_sample = sum(
            math.prod(_stage_shape(backbone, n, splits.train, mean, std, device, settings.tiles)) for n in layers
        )
        total = per_sample * 4 * sum(len(d) for d in extract_sets.values())
        groups = [layers] if total <= settings.cache_gb * 2**30 else [[n] for n in layers]
    else:
        groups = [[n] for n in layers]

    results: dict[str, Any] = {}
    for group in groups:
        if cached:
            cache = feature_cache if feature_cache is not None and len(groups) == 1 else {}
            feats = _features(
                backbone,
                extract_sets,
                group,
                mean,
                std,
                device,
                settings.eval_batch_size,
                settings.tiles,
                precision,
                cache,
            )
        for layer in group:
            trunk_state = copy.deepcopy(backbone.state_dict()) if settings.finetune else None
            src: dict[str, CachedFeatures | LiveFeatures]
            if cached:
                mirrored = feats["train" + MIRRORED][layer] if flip else None
                src = {k: CachedFeatures(feats[k][layer], mirrored if k == "train" else None) for k in sets}
            else:
                src = {
                    k: LiveFeatures(
                        backbone,
                        d.images,
                        layer,
                        mean,
                        std,
                        device,
                        augment=settings.augment,
                        finetune=settings.finetune,
                        tiles=settings.tiles,
                    )
                    for k, d in sets.items()
                }
            torch.manual_seed(settings.seed)
            probe = probe_cls(probe_cfg, src["train"].shape, len(classes)).to(device)
            val = (src["val"], splits.val.labels.to(device)) if splits.val is not None else None  # type: ignore[union-attr]
            history, used_epoch = train_probe(
                probe,
                src["train"],
                splits.train.labels,
                settings,
                device,
                val=val,
                trunk=backbone if settings.finetune else None,
                on_epoch=on_epoch,
                layer=layer,
            )
            res: dict[str, Any] = {
                "feature_shape": list(src["train"].shape),
                "probe_parameters": sum(p.numel() for p in probe.parameters()),
                "history": history,
                "reported_epoch": used_epoch,
            }
            if val is not None:
                res["val"] = scores(predict(probe, val[0], settings.eval_batch_size, val[1].device), val[1], classes)
                if history:
                    best = max(history, key=lambda r: r["val_acc"])
                    res["best_val_epoch"], res["best_val_acc"] = best["epoch"], best["val_acc"]
            test = scores(
                predict(probe, src["test"], settings.eval_batch_size, splits.test.labels.device),
                splits.test.labels,
                classes,
            )
            res.update(test_acc=test["acc"], per_class=test["per_class"], confusion=test["confusion"])
            results[layer] = res
            del src, probe
            if trunk_state is not None:  # fine-tuning changed the trunk: restore it for the caller
                backbone.load_state_dict(trunk_state)
        feats = {}

    with_val = [n for n in layers if "val" in results[n]]
    best_layer = max(with_val, key=lambda n: results[n]["val"]["acc"]) if with_val else None
    return {
        "format": FORMAT,
        "trunk": trunk.description,
        "backbone": trunk.run_config["backbone"] if trunk.run_config else None,
        "probe": settings.probe,
        "probe_config": probe_cfg.model_dump(mode="json"),
        "settings": settings.model_dump(mode="json"),
        "features": (
            "cached (one trunk pass, and one over the mirrored training images: flip augmentation"
            if flip
            else "cached (one trunk pass, no augmentation"
        )
        + (f"; {precision} autocast)" if precision != "fp32" else ")")
        if cached
        else ("live: crop + flip per batch" if settings.augment else "live, no augmentation")
        + (", trunk fine-tuned" if settings.finetune else ", trunk frozen (eval mode)"),
        "data": {
            "classes": classes,
            "train_images": len(splits.train),
            "val_images": len(splits.val) if splits.val is not None else 0,
            "test_images": len(splits.test),
            **splits.notes,
        },
        "selection": (
            "test accuracy of the last epoch; the test split is never used for selection; "
            f"best_layer = highest accuracy on the validation split ({splits.notes.get('validation')})"
            if settings.select == "last"
            else "weights of the epoch with the best accuracy on the validation split "
            f"({splits.notes.get('validation')}); the test split is never used for selection"
        ),
        "layers": results,
        "best_layer": best_layer,
    }


def _run_precision(trunk: Trunk) -> str:
    """The precision the trunk's run trained in (fp32 without a run): its features are read the
    same way (bf16 autocast about halves a CPU feature pass)."""
    return str((trunk.run_config or {}).get("precision", "fp32"))


def _one_layer_error() -> list[str]:
    raise ConfigError("--finetune trains the trunk up to one layer: give a single --layer")


def _stage_shape(backbone: Backbone, layer: str, data: ImageData, mean, std, device, tiles: int) -> tuple[int, ...]:
    return LiveFeatures(backbone, data.images[:2], layer, mean, std, device, augment=False, tiles=tiles).shape


def write_report(report: dict[str, Any], folder: str | Path, name: str = "probe.json") -> Path:
    path = Path(folder) / name
    write_json(path, report)
    return path
