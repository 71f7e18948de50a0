"""The pretraining loop: one function, read top to bottom.

    uint8 images [B, C, H, W] (in memory) -> device -> random crop + flip (batched)
      -> this process's share -> normalise -> task.prepare -> (inputs, targets [M])
      -> task.forward(backbone, inputs) -> logits [M, K] -> task.loss -> backward -> SGD step
    end of epoch: lr schedule, held-out pretext accuracy, metrics.jsonl, atomic checkpoint.

Randomness is drawn from generators seeded by (seed, epoch), so an epoch replays identically
and ``resume`` after a kill gives the same result as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .. import __version__
from ..config import RunConfig, validate_section
from ..data.augment import normalize, random_crop_flip
from ..data.datasets import carve_test, load_dataset, split_holdout, take_subset
from ..errors import CheckpointError, ConfigError
from ..interfaces import Backbone, PretextTask
from ..plugins import Plugins, load_plugins
from .callbacks import Callback
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, write_json, write_jsonl
from .distributed import Placement, setup, teardown
from .syncbn import convert_sync_batchnorm

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
# Keys a resumed run may change; anything else must match the checkpoint's config.
RESUMABLE_KEYS = ("epochs", "device", "compile", "sync_batchnorm")


class PretextModel(nn.Module):
    """Backbone + task (which owns the head) as one module, so DDP and torch.compile see both."""

    def __init__(self, backbone: Backbone, task: PretextTask) -> None:
        super().__init__()
        self.backbone = backbone
        self.task = task

    def forward(self, inputs: Any) -> Tensor:
        return self.task(self.backbone, inputs)


@dataclass
class TrainResult:
    out_dir: Path
    config: RunConfig
    history: list[dict[str, Any]]

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def _seed(*parts: int) -> int:
    """A 63-bit seed from a tuple, stable across runs and processes."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def _channels_last(inputs: Any, enabled: bool) -> Any:
    if not enabled:
        return inputs
    if isinstance(inputs, Tensor):
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_channels_last(x, enabled) for x in inputs)
    return inputs


def build_model(config: RunConfig, plugins: Plugins) -> PretextModel:
    """The backbone and task a config describes, freshly initialised (seeded by config.seed)."""
    b_opts = {k: v for k, v in config.backbone.items() if k != "name"}
    t_opts = {k: v for k, v in config.task.items() if k != "name"}
    b_cls = plugins.backbones.get(config.backbone["name"])
    t_cls = plugins.tasks.get(config.task["name"])
    torch.manual_seed(config.seed)
    backbone = b_cls(validate_section(b_cls.Config, b_opts, "backbone."))
    return PretextModel(backbone, t_cls(validate_section(t_cls.Config, t_opts, "task."), backbone))


def make_optimizer(params, config: RunConfig) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
            weight_decay=o.weight_decay,
        )
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _resumed_config(stored: dict[str, Any], requested: RunConfig) -> RunConfig:
    """The checkpoint's config, with the few keys a resume may change taken from the request."""
    old = RunConfig.model_validate(stored)
    new = requested.model_dump(mode="json")
    was = old.model_dump(mode="json")
    for key in ("mean", "std"):  # filled in from the data at the first start
        if new["data"][key] is None:
            new["data"][key] = was["data"][key]
    for key in set(new) | set(was):
        if key not in RESUMABLE_KEYS and new.get(key) != was.get(key):
            raise CheckpointError(
                f"--resume: '{key}' differs from the run's config ({was.get(key)} in the checkpoint, "
                f"{new.get(key)} now); resume with the original settings or start a new --out folder"
            )
    return old.model_copy(update={k: getattr(requested, k) for k in RESUMABLE_KEYS})


@torch.no_grad()
def evaluate(
    model: PretextModel, images: Tensor, config: RunConfig, device: torch.device, channels_last: bool
) -> dict[str, float]:
    """Pretext loss and accuracy on held-out images (no augmentation, fixed pretext draws)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(_seed(config.seed, 7))
    total = torch.zeros(3, device=device, dtype=torch.float64)
    for start in range(0, images.shape[0], config.data.batch_size):
        x = normalize(images[start : start + config.data.batch_size].to(device), config.data.mean, config.data.std)
        inputs, targets = model.task.prepare(x, generator)
        with _autocast(device, config.precision):
            logits = model(_channels_last(inputs, channels_last)).float()
        n = targets.shape[0]
        total += torch.stack([model.task.loss(logits, targets).double() * n, model.task.correct(logits, targets).double(), torch.tensor(n, device=device, dtype=torch.float64)])
    model.train(was_training)
    loss, correct, n = total.tolist()
    return {"heldout_loss": loss / n, "heldout_acc": correct / n}


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    plugins: Plugins | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Pretrain ``config.backbone`` on ``config.task``; writes checkpoints and metrics to ``out_dir``."""
    plugins = plugins or load_plugins()
    out_dir = Path(out_dir)
    place: Placement = setup(config.device)
    try:
        return _train(config, out_dir, plugins, resume, list(callbacks), place)
    finally:
        teardown(place)


def _train(
    config: RunConfig, out_dir: Path, plugins: Plugins, resume: bool, callbacks: list[Callback], place: Placement
) -> TrainResult:
    device, rank, world = place.device, place.rank, place.world_size
    state: dict[str, Any] | None = None
    if (out_dir / CHECKPOINT).exists():
        if not resume:
            raise CheckpointError(
                f"'{out_dir}' already holds a run; add --resume to continue it, or choose another --out"
            )
        state = load_checkpoint(out_dir, map_location=device)
        config = _resumed_config(state["config"], config)
    if config.data.batch_size % world:
        raise ConfigError(f"data.batch_size {config.data.batch_size} must be divisible by the {world} processes")

    # Data: uint8 [N, C, H, W] in memory; a seeded held-out split for pretext accuracy.
    data = load_dataset(config.data.name, plugins, "train", config.data.image_size)
    if config.data.exclude_test:  # the probes' carved test split: never pretrained on
        data = carve_test(data, config.data.exclude_test, config.seed)[0]
    data = take_subset(data, config.data.subset, config.seed)
    train_data, heldout = split_holdout(data, config.data.holdout, config.seed)
    mean, std = config.data.mean, config.data.std
    if mean is None or std is None:
        stats = data.stats()
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"mean": mean or stats[0], "std": std or stats[1]})}
        )
    if len(config.data.mean or ()) != data.images.shape[1] or len(config.data.std or ()) != data.images.shape[1]:
        raise ConfigError(f"data.mean/std need {data.images.shape[1]} values, one per image channel")
    images = train_data.images
    if device.type == "cuda":  # keep the whole uint8 set on the GPU when it is small enough
        images = images.to(device) if images.numel() < 2**31 else images.pin_memory()

    # Model, optimizer, schedule.
    model = build_model(config, plugins).to(device)
    if world > 1 and config.sync_batchnorm:
        # Before the optimizer sees the parameters; same names, so checkpoints are unchanged.
        convert_sync_batchnorm(model, device)
    channels_last = bool(config.channels_last) if config.channels_last is not None else device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.schedule.milestones), gamma=config.schedule.gamma
    )
    start_epoch, history = 0, []
    if state is not None:
        model.backbone.load_state_dict(state["backbone"])
        model.task.load_state_dict(state["task"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
    step_model: nn.Module = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        step_model = torch.compile(step_model)

    batch = config.data.batch_size
    local = batch // world
    n = images.shape[0]
    steps = max(1, n // batch)  # drop the last partial batch (BatchNorm, equal-size steps)
    if place.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", config.model_dump(mode="json"))
    info = {
        "device": str(device), "world_size": world, "train_images": n,
        "heldout_images": 0 if heldout is None else len(heldout), "steps_per_epoch": steps,
        "start_epoch": start_epoch, "epochs": config.epochs, "dataset": data.description,
        "parameters": sum(p.numel() for p in model.backbone.parameters()), "channels_last": channels_last,
        "precision": config.precision, "out_dir": str(out_dir),
    }
    for cb in callbacks:
        cb.on_start(info)

    for epoch in range(start_epoch, config.epochs):
        generator = torch.Generator(device=device).manual_seed(_seed(config.seed, epoch, 1))
        torch.manual_seed(_seed(config.seed, epoch, 2))  # module randomness (dropout) replays too
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(config.seed, epoch, 3)))
        if n < batch:
            order = order.repeat(batch // n + 1)[:batch]  # tiny datasets: one full batch per epoch
        model.train()
        sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss * samples, correct, samples
        t0 = time.perf_counter()
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            x = images[idx.to(images.device)].to(device, non_blocking=True)  # [B, C, H, W] uint8
            # Augment the global batch, then take this process's share: N processes see exactly
            # the images one process would.
            x = random_crop_flip(x, config.data.crop_padding, config.data.flip, generator)
            x = normalize(x[rank * local : (rank + 1) * local], config.data.mean, config.data.std)
            inputs, targets = model.task.prepare(x, generator)  # e.g. [4B, C, H, W], [4B]
            with _autocast(device, config.precision):
                logits = step_model(_channels_last(inputs, channels_last))  # [M, K]
            loss = model.task.loss(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                m = targets.shape[0]
                sums += torch.stack([loss.detach().double() * m, model.task.correct(logits, targets).double(), torch.tensor(m, device=device, dtype=torch.float64)])
            if callbacks and (step % 5 == 4 or step == steps - 1):
                s = sums.tolist()  # a device sync: only every few steps
                elapsed = time.perf_counter() - t0
                for cb in callbacks:
                    cb.on_step(epoch, step + 1, steps, {"loss": s[0] / s[2], "acc": s[1] / s[2], "images_per_s": (step + 1) * local / elapsed})
        seconds = time.perf_counter() - t0
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if world > 1:
            torch.distributed.all_reduce(sums)
        loss_sum, correct, count = sums.tolist()
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / count, "train_acc": correct / count,
            "images_per_s": steps * batch / seconds, "samples_per_s": count / seconds, "seconds": seconds,
        }
        if place.is_main:
            if heldout is not None:
                record.update(evaluate(model, heldout.images, config, device, channels_last))
            history.append(record)
            save_checkpoint(out_dir / CHECKPOINT, {
                "config": config.model_dump(mode="json"),
                "sslkit_version": __version__,
                "plugins": plugins.versions(),
                "epoch": epoch + 1,
                "history": history,
                "data": {"description": data.description, "shape": list(data.images.shape[1:]), "classes": data.classes},
                "backbone": model.backbone.state_dict(),
                "task": model.task.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            })
            write_jsonl(out_dir / METRICS, history)  # rewritten whole: always matches the checkpoint
        else:
            history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(record)
        if world > 1:
            torch.distributed.barrier()
    return TrainResult(out_dir, config, history)
