"""Training one probe: SGD with the probe's own (the paper's) schedule, or one ``fit`` for
non-parametric probes; prediction, accuracy and per-class scores."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..interfaces import Backbone, Probe
from .settings import ProbeSettings


class ProbeObserver:
    """What a probing call tells whoever watches it (the progress display of ``sslkit probe`` and
    ``run.probe``); every method is a no-op by default."""

    def on_features(self, split: str, done: int, total: int) -> None:
        """While the frozen trunk embeds a split for the feature cache: ``done`` of ``total`` images."""

    def on_epoch(self, layer: str, record: dict[str, Any]) -> None:
        """After each epoch of the probe on ``layer``, with its history record."""


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


def _sgd(probe: Probe, trunk: Backbone | None, finetune: bool) -> torch.optim.SGD:
    """The probe's SGD (and the trunk's at ``lr * finetune_lr_scale`` when fine-tuning)."""
    cfg = probe.config
    groups = [{"params": list(probe.parameters()), "lr": cfg.lr}]
    if finetune and trunk is not None:
        groups.append({"params": list(trunk.parameters()), "lr": cfg.lr * cfg.finetune_lr_scale})
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def _train_epoch(
    probe: Probe,
    source: Any,
    labels: Tensor,
    order: Tensor,
    batch: int,
    opt: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[float, float]:
    """One epoch over ``order`` (``steps * batch`` indices) -> (mean loss, accuracy)."""
    device = labels.device
    # Indices move to the devices once per epoch, not once per step; the sums stay on the
    # device and are read once per epoch (a float() per step would wait for the GPU each time).
    order_src = order.to(getattr(source, "index_device", torch.device("cpu")))
    order_dev = order.to(device)
    probe.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for start in range(0, order.shape[0], batch):
        span = slice(start, start + batch)
        logits = probe(source.batch(order_src[span], generator, train=True))  # [batch, classes]
        y = labels[order_dev[span]]
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * batch
        correct += (logits.detach().argmax(1) == y).sum()
    return float(loss_sum) / order.shape[0], int(correct) / order.shape[0]


def train_probe(
    probe: Probe,
    source: Any,
    labels: Tensor,
    settings: ProbeSettings,
    device: torch.device,
    *,
    val: tuple[Any, Tensor] | None = None,
    trunk: Backbone | None = None,
    observer: ProbeObserver | None = None,
    layer: str = "",
) -> tuple[list[dict[str, Any]], int]:
    """SGD on the probe (and the trunk at ``lr * finetune_lr_scale`` when fine-tuning) with the
    probe's schedule. Returns (history, the epoch whose weights ``probe`` now holds)."""
    cfg = probe.config
    if not probe.trains:  # non-parametric (kNN): remember the training features
        probe.fit(source.batch(torch.arange(len(source)), None, train=False), labels.to(device))
        return [], 0
    opt = _sgd(probe, trunk, settings.finetune)
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
    for epoch in range(cfg.epochs):
        lr = opt.param_groups[0]["lr"]
        loss, acc = _train_epoch(probe, source, labels, _epoch_order(n, steps * batch, gen), batch, opt, aug_gen)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss, "train_acc": acc}
        sched.step()
        if val is not None:
            record["val_acc"] = accuracy(predict(probe, val[0], settings.eval_batch_size, val[1].device), val[1])
            if settings.select == "val" and record["val_acc"] > best[0]:
                best = (record["val_acc"], epoch + 1, copy.deepcopy(probe.state_dict()))
        history.append(record)
        if observer is not None:
            observer.on_epoch(layer, record)
    if settings.select == "val" and best[2] is not None:
        probe.load_state_dict(best[2])
        return history, best[1]
    return history, cfg.epochs
