"""The pretraining loop: one function, read top to bottom.

    source (RAM tensor or packed store) -> this process's uint8 batch [b, C, H, W] on the device
      -> crop + flip (drawn for the global batch, sliced) -> [b, C, S, S] -> normalise
      -> task.prepare -> (inputs, targets [M]) -> task.forward(backbone, inputs) -> logits [M, K]
      -> task.loss -> backward -> SGD step at the schedule's lr for (epoch, step)
    every N steps/minutes and at the end of each epoch: an atomic checkpoint;
    end of epoch: held-out pretext accuracy, metrics.jsonl.

Every random draw comes from a generator seeded by (seed, epoch, step[, rank]), so any step
replays identically: a run killed mid-epoch resumes at the step it stopped and ends with the
metrics of an uninterrupted run. The data order and the crops are drawn for the global batch,
so N processes see exactly the images and crops one process would; the pretext draws inside
``task.prepare`` (angles, patch positions) and dropout are drawn per process, independently.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from .. import __version__
from ..checkpoint import CHECKPOINT, save_checkpoint
from ..config import RunConfig
from ..data.augment import Crop, normalize
from ..data.datasets import ImageData, carve_test, split_holdout, take_subset
from ..data.opener import open_training_data
from ..data.training import TrainingSource, fingerprint, iterate_batches
from ..errors import ConfigError
from ..factory import create_backbone, create_task
from ..files import write_json, write_jsonl
from ..interfaces import Backbone, Callback, PretextTask
from ..plugins import Plugins, load_plugins
from .distributed import Placement, setup, teardown
from .precise_bn import PRECISE_BATCHES, PRECISE_BELOW_STEPS, recompute_batchnorm
from .precision import autocast
from .rundir import Resume, RunLock, check_resumable, open_run, resumed_config
from .schedule import lr_factor, set_lr
from .syncbn import convert_sync_batchnorm

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"


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


@dataclass
class TrainingData:
    """The pretraining split, the held-out split (pretext accuracy), and what they are."""

    train: TrainingSource
    heldout: TrainingSource | None
    description: str
    classes: list[str]
    images: int  # before subset / held-out split: what the fingerprint covers
    fingerprint: str
    channels: int
    stats: tuple[tuple[float, ...], tuple[float, ...]]  # per-channel mean, std of the whole dataset


def _seed(*parts: int) -> int:
    """A 63-bit seed from a tuple, stable across runs and processes."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(_seed(*parts))


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
    torch.manual_seed(config.seed)
    b_opts = {k: v for k, v in config.backbone.items() if k != "name"}
    t_opts = {k: v for k, v in config.task.items() if k != "name"}
    backbone = create_backbone(config.backbone["name"], plugins, **b_opts)
    return PretextModel(backbone, create_task(config.task["name"], backbone, plugins, **t_opts))


def make_optimizer(params, config: RunConfig) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=o.lr,
            momentum=o.momentum,
            nesterov=o.nesterov and o.momentum > 0,
            weight_decay=o.weight_decay,
        )
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def load_training_data(
    config: RunConfig, plugins: Plugins, place: Placement, callbacks: Sequence[Callback] = ()
) -> TrainingData:
    """Open the data (rank 0 first: it decodes or packs into the shared cache, the others then
    read that cache instead of all decoding at once), leave out the probes' test split, take
    the subset, hold out the pretext-accuracy split."""

    def progress(done: int, total: int) -> None:
        for cb in callbacks:
            cb.on_data_progress(done, total)

    if place.world_size > 1 and not place.is_main:
        torch.distributed.barrier()
    full = open_training_data(config.data, plugins, progress if place.is_main else None, place.device)
    if place.world_size > 1 and place.is_main:
        torch.distributed.barrier()
    data = full
    if config.data.exclude_test:  # the probes' carved test split: never pretrained on
        data = carve_test(data, config.data.exclude_test, config.seed)[0]
    data = take_subset(data, config.data.subset, config.seed)
    train, heldout = split_holdout(data, config.data.holdout, config.seed)
    return TrainingData(
        train,
        heldout,
        full.description,
        list(full.classes),
        len(full),
        fingerprint(full),
        full.channels,
        full.stats(),
    )


def _with_statistics(config: RunConfig, data: TrainingData) -> RunConfig:
    """Fill in data.mean/std from the data (measured once; the checkpoint keeps them)."""
    mean, std = config.data.mean, config.data.std
    if mean is None or std is None:
        stats = data.stats
        update = {"mean": mean or stats[0], "std": std or stats[1]}
        config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    if len(config.data.mean or ()) != data.channels or len(config.data.std or ()) != data.channels:
        raise ConfigError(f"data.mean/std need {data.channels} values, one per image channel")
    return config


def _normalization(config: RunConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """data.mean/std, which _with_statistics has filled in before any batch is drawn."""
    mean, std = config.data.mean, config.data.std
    if mean is None or std is None:
        raise RuntimeError("data.mean/std must be filled in (_with_statistics) before training or evaluating")
    return mean, std


def make_crop(config: RunConfig, source: TrainingSource, description: str | None = None) -> Crop:
    """The crop ``data.crop`` asks for, at ``data.image_size`` (default: the images' own size)."""
    d = config.data
    native = source.uniform_size
    size = d.image_size or (native[0] if native and native[0] == native[1] else None)
    if size is None:
        raise ConfigError(
            f"the images of {description or source.description} differ in size (or are not square); "
            "set the training size with --set data.image_size=N"
        )
    mode = d.crop
    if mode == "auto":
        mode = "pad_crop" if native == (size, size) else "random_resized"
    if mode == "pad_crop" and native != (size, size):
        raise ConfigError(
            f"data.crop=pad_crop needs images of the training size {size}x{size}; "
            "use data.crop=random_resized or center for images of other sizes"
        )
    return Crop(mode, size, d.crop_padding, d.crop_scale, d.crop_ratio, d.flip)


@torch.no_grad()
def evaluate(
    model: PretextModel,
    heldout: TrainingSource,
    crop: Crop,
    config: RunConfig,
    device: torch.device,
    channels_last: bool,
) -> dict[str, float]:
    """Pretext loss and accuracy on held-out images (central crop, no flip, fixed pretext draws)."""
    was_training = model.training
    model.eval()
    generator = _generator(device, config.seed, 7)
    b = config.data.batch_size
    batches = [torch.arange(s, min(s + b, len(heldout))) for s in range(0, len(heldout), b)]
    loss_sum, correct, count = (
        torch.zeros((), device=device, dtype=torch.float64),
        torch.zeros((), device=device, dtype=torch.float64),
        0,
    )
    for batch in iterate_batches(heldout, batches, device, config.data.workers, config.data.decode):
        x = normalize(crop.center(batch.images, batch.sizes), *_normalization(config))
        inputs, targets = model.task.prepare(x, generator)
        with autocast(device, config.precision):
            logits = model(_channels_last(inputs, channels_last)).float()
        n = targets.shape[0]
        loss_sum += model.task.loss(logits, targets).double() * n
        correct += model.task.correct(logits, targets).double()
        count += n
    model.train(was_training)
    return {"heldout_loss": loss_sum.item() / count, "heldout_acc": correct.item() / count}


def _precise_batchnorm(
    model: PretextModel, source: TrainingSource, crop: Crop, config: RunConfig, place: Placement, channels_last: bool
) -> int:
    """Recompute BatchNorm statistics from this process's share of the first training batches,
    with the evaluation crop and fixed pretext draws (see :mod:`sslkit.engine.precise_bn`)."""
    device, b = place.device, config.data.batch_size
    local = b // place.world_size
    n = min(PRECISE_BATCHES, max(1, len(source) // b))
    shares = [
        torch.arange(s * b + place.rank * local, s * b + (place.rank + 1) * local) % len(source) for s in range(n)
    ]
    generator = _generator(device, config.seed, 8, place.rank)
    mean, std = _normalization(config)

    def inputs():
        for batch in iterate_batches(source, shares, device, config.data.workers, config.data.decode):
            x = normalize(crop.center(batch.images, batch.sizes), mean, std)
            yield model.task.prepare(x, generator)[0]

    def forward(inputs):
        with autocast(device, config.precision):
            return model(_channels_last(inputs, channels_last))

    return recompute_batchnorm(model, inputs(), forward)


def _has_unused_parameters(model: PretextModel, channels: int, size: int, device: torch.device) -> bool:
    """Whether a training step leaves some parameters without a gradient (a task that reads a
    middle stage, e.g. jigsaw's ``task.stage``): DDP then needs ``find_unused_parameters``."""
    probe = copy.deepcopy(model).train()
    x = torch.randn(2, channels, size, size, device=device)
    inputs, targets = probe.task.prepare(x, _generator(device, 0))
    probe.task.loss(probe(inputs).float(), targets).backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


@dataclass
class Trainee:
    """What a step changes: the model (and its DDP/compiled wrapper), optimizer, schedule, scaler."""

    model: PretextModel
    step_model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    channels_last: bool

    def restore(
        self, state: dict[str, Any], changes: dict[str, list[Any]]
    ) -> tuple[int, int, list[dict[str, Any]], list[dict[str, Any]]]:
        """Load a checkpoint's weights and states; (epoch, step, history, resumes) to continue from."""
        self.model.backbone.load_state_dict(state["backbone"])
        self.model.task.load_state_dict(state["task"])
        # The learning rate is recomputed each step (engine.schedule); checkpoints before 0.1.1
        # also carry a "scheduler" entry, unused.
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        epoch, step = int(state["epoch"]), int(state.get("step", 0))
        resumes = [*state.get("resumes", []), {"epoch": epoch, "step": step, "changes": changes, "time": time.time()}]
        return epoch, step, list(state["history"]), resumes

    def states(self) -> dict[str, Any]:
        return {
            "backbone": self.model.backbone.state_dict(),
            "task": self.model.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }


def build_trainee(config: RunConfig, plugins: Plugins, place: Placement, channels: int, size: int) -> Trainee:
    """The model on the device (SyncBN, channels_last, DDP, compile as configured) and its optimizer."""
    device, world = place.device, place.world_size
    model = build_model(config, plugins).to(device)
    if world > 1 and config.sync_batchnorm:
        # Before the optimizer sees the parameters; same names, so checkpoints are unchanged.
        convert_sync_batchnorm(model, device)
        if config.compile and device.type == "cuda":
            log.warning(
                "torch.compile breaks its graph at every SyncBatchNorm; for speed set sync_batchnorm=false "
                "(per-GPU statistics) or compile=false"
            )
    channels_last = bool(config.channels_last) if config.channels_last is not None else device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    step_model: nn.Module = model
    if world > 1:
        unused = _has_unused_parameters(model, channels, size, device)
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
    if config.compile:
        # An nn.Module compiles to an OptimizedModule (a Module); torch's stub only promises a callable.
        step_model = cast(nn.Module, torch.compile(step_model))
    return Trainee(model, step_model, optimizer, scaler, channels_last)


def _payload(
    config: RunConfig, plugins: Plugins, data: TrainingData, crop: Crop, t: Trainee, meta: dict[str, Any]
) -> dict[str, Any]:
    """A checkpoint: the config, versions, where the run stands (``meta``: epoch, step within the
    next epoch, that epoch's partial sums, history, resumes), the data's identity and all states."""
    return {
        "config": config.model_dump(mode="json"),
        "sslkit_version": __version__,
        "plugins": plugins.versions(),
        **meta,
        "data": {
            "description": data.description,
            "shape": [data.channels, crop.size, crop.size],
            "classes": data.classes,
            "images": data.images,
            "fingerprint": data.fingerprint,
        },
        **t.states(),
    }


def _run_info(
    config: RunConfig,
    place: Placement,
    data: TrainingData,
    train_src: TrainingSource,
    crop: Crop,
    t: Trainee,
    steps: int,
    start_epoch: int,
    start_step: int,
    out_dir: Path,
) -> dict[str, Any]:
    """What the callbacks are told once, before the first step."""
    return {
        "device": str(place.device),
        "world_size": place.world_size,
        "train_images": len(train_src),
        "heldout_images": 0 if data.heldout is None else len(data.heldout),
        "steps_per_epoch": steps,
        "start_epoch": start_epoch,
        "start_step": start_step,
        "epochs": config.epochs,
        "dataset": data.description,
        "parameters": sum(p.numel() for p in t.model.backbone.parameters()),
        "channels_last": t.channels_last,
        "precision": config.precision,
        "out_dir": str(out_dir),
        "image_size": crop.size,
        "crop": crop.mode,
        "streaming": not isinstance(train_src, ImageData),
    }


def train(
    config: RunConfig,
    out_dir: str | Path,
    *,
    plugins: Plugins | None = None,
    resume: Resume = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Pretrain ``config.backbone`` on ``config.task``; writes checkpoints and metrics to ``out_dir``.

    ``resume``: False (``out_dir`` must not hold a run), True (continue the run there), or
    ``"auto"`` (continue it if there is one, else start).
    """
    plugins = plugins or load_plugins()
    out_dir = Path(out_dir)
    place: Placement = setup(config.device, config.dist_timeout_minutes)
    try:
        with RunLock(out_dir) if place.is_main else nullcontext():  # one writer per run folder
            return _train(config, out_dir, plugins, resume, list(callbacks), place)
    finally:
        teardown(place)


def _train(
    config: RunConfig, out_dir: Path, plugins: Plugins, resume: Resume, callbacks: list[Callback], place: Placement
) -> TrainResult:
    device, rank, world = place.device, place.rank, place.world_size
    state = open_run(out_dir, resume, device)
    changes: dict[str, list[Any]] = {}
    if state is not None:
        config, changes = resumed_config(state["config"], config)
    if config.data.batch_size % world:
        raise ConfigError(f"data.batch_size {config.data.batch_size} must be divisible by the {world} processes")

    # Data: RAM or a streamed store; a seeded held-out split for pretext accuracy.
    data = load_training_data(config, plugins, place, callbacks)
    config = _with_statistics(config, data)
    crop = make_crop(config, data.train, data.description)
    if state is not None:
        check_resumable(state, config, data.fingerprint, data.images)
    train_src = data.train
    if device.type == "cuda" and isinstance(train_src, ImageData):  # RAM data: onto the GPU when small
        images = train_src.images
        train_src = replace(train_src, images=images.to(device) if images.numel() < 2**31 else images.pin_memory())

    # Model, optimizer, schedule, gradient scaler (fp16 only); the checkpoint's state on a resume.
    t = build_trainee(config, plugins, place, data.channels, crop.size)
    start_epoch, start_step = 0, 0
    history: list[dict[str, Any]] = []
    resumes: list[dict[str, Any]] = []
    if state is not None:
        start_epoch, start_step, history, resumes = t.restore(state, changes)
    model, step_model, optimizer, scaler = t.model, t.step_model, t.optimizer, t.scaler
    channels_last = t.channels_last

    batch = config.data.batch_size
    local = batch // world
    n = len(train_src)
    steps = max(1, n // batch)  # drop the last partial batch: every rank takes exactly `steps` steps
    if place.is_main and state is None:
        write_json(out_dir / "config.json", config.model_dump(mode="json"))  # once, when the run starts
    info = _run_info(config, place, data, train_src, crop, t, steps, start_epoch, start_step, out_dir)
    for cb in callbacks:
        cb.on_start(info)

    def checkpoint(epoch_done: int, step: int, partial: list[float]) -> None:
        meta = {"epoch": epoch_done, "step": step, "partial": partial, "history": history, "resumes": resumes}
        save_checkpoint(out_dir / CHECKPOINT, _payload(config, plugins, data, crop, t, meta))

    every_steps, every_seconds = config.checkpoint.every_steps, (config.checkpoint.every_minutes or 0) * 60
    for epoch in range(start_epoch, config.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(config.seed, epoch, 3)))
        if n < batch:
            order = order.repeat(batch // n + 1)[:batch]  # tiny datasets: one full batch per epoch
        first = start_step if epoch == start_epoch else 0
        shares = [order[s * batch + rank * local : s * batch + (rank + 1) * local] for s in range(first, steps)]
        partial = state.get("partial") if state is not None and epoch == start_epoch and first else None
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        count, seconds_before = 0, 0.0
        if partial and place.is_main:  # the interrupted epoch's sums, counted once (rank 0)
            loss_sum += partial[0]
            correct += partial[1]
            count, seconds_before = int(partial[2]), float(partial[3])
        model.train()
        t0 = last_save = time.perf_counter()
        norm = _normalization(config)
        batches = iterate_batches(train_src, shares, device, config.data.workers, config.data.decode)
        for step, loaded in enumerate(batches, start=first):  # uint8 [local, C, H, W] on the device
            x = crop(loaded.images, loaded.sizes, _generator(device, config.seed, epoch, step, 1), batch, rank * local)
            x = normalize(x, *norm)  # [local, C, S, S] float
            lr = set_lr(optimizer, config.optim.lr * lr_factor(config.schedule, config.epochs, epoch, step, steps))
            torch.manual_seed(_seed(config.seed, epoch, step, 2, rank))  # module randomness (dropout)
            inputs, targets = model.task.prepare(
                x, _generator(device, config.seed, epoch, step, 3, rank)
            )  # e.g. [4b, C, S, S], [4b]
            with autocast(device, config.precision):
                logits = step_model(_channels_last(inputs, channels_last))  # [M, K]
            loss = model.task.loss(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            with torch.no_grad():
                m = targets.shape[0]
                loss_sum += loss.detach().double() * m
                correct += model.task.correct(logits, targets).double()
                count += m
            if callbacks and (step % 5 == 4 or step == steps - 1):
                elapsed = time.perf_counter() - t0  # .item(): a device sync, only every few steps
                for cb in callbacks:
                    cb.on_step(
                        epoch,
                        step + 1,
                        steps,
                        {
                            "loss": loss_sum.item() / count,
                            "acc": correct.item() / count,
                            "images_per_s": (step + 1 - first) * local / elapsed,
                        },
                    )
            now = time.perf_counter()
            due = (every_steps and (step + 1) % every_steps == 0) or _minutes_due(
                every_seconds, now - last_save, step, world, device
            )
            if due and step + 1 < steps:
                sums = _global_sums(loss_sum, correct, count, world, device)
                if place.is_main:
                    checkpoint(epoch, step + 1, [*sums, seconds_before + now - t0])
                last_save = now
        seconds = seconds_before + time.perf_counter() - t0
        loss_total, correct_total, count_total = _global_sums(loss_sum, correct, count, world, device)
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_total / count_total,
            "train_acc": correct_total / count_total,
            "images_per_s": steps * batch / seconds,
            "samples_per_s": count_total / seconds,
            "seconds": seconds,
        }
        if data.heldout is not None and (epoch + 1) * steps < PRECISE_BELOW_STEPS:  # every process: SyncBN
            record["precise_bn_batches"] = _precise_batchnorm(model, train_src, crop, config, place, channels_last)
        if place.is_main:
            if data.heldout is not None:
                record.update(evaluate(model, data.heldout, crop, config, device, channels_last))
            history.append(record)
            checkpoint(epoch + 1, 0, [])
            write_jsonl(out_dir / METRICS, history)  # rewritten whole: always matches the checkpoint
        else:
            history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(record)
        if world > 1:
            torch.distributed.barrier()
    return TrainResult(out_dir, config, history)


def _global_sums(loss_sum: Tensor, correct: Tensor, count: int, world: int, device: torch.device) -> list[float]:
    """[loss * samples, correct, samples] over all processes (one all-reduce)."""
    sums = torch.stack([loss_sum, correct, torch.tensor(float(count), dtype=torch.float64).to(device)])
    if world > 1:
        torch.distributed.all_reduce(sums)
    return sums.tolist()


def _minutes_due(every_seconds: float, since_save: float, step: int, world: int, device: torch.device) -> bool:
    """Time-based checkpoints. Ranks' clocks differ, so with several processes rank 0's answer is
    shared, and only every 20 steps (each share is a collective)."""
    if not every_seconds:
        return False
    if world == 1:
        return since_save >= every_seconds
    if step % 20 != 19:
        return False
    flag = torch.tensor([1.0 if since_save >= every_seconds else 0.0]).to(device)
    torch.distributed.broadcast(flag, 0)
    return bool(flag.item())
