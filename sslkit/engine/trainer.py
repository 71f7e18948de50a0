"""The pretraining loop, read top to bottom.

    source (RAM tensor or packed store) -> this process's uint8 batch [b, C, H, W] on the device
      -> the task's input (engine.inputs): crop + flip, or its views, drawn for the global batch,
         this process's rows -> normalise
      -> task.prepare -> (inputs, targets [M] or None) -> task.forward(backbone, inputs) -> outputs
      -> task.loss -> a scalar or sslkit.Loss (named metrics) -> backward
      -> optimiser step (parameter groups; SGD, AdamW or LARS) at the schedule's lr for (epoch, step)
      -> task.after_step(backbone, StepInfo): EMA targets, momentum and temperature schedules
    every N steps/minutes and at the end of each epoch: an atomic checkpoint;
    end of epoch: held-out pretext metrics, the online kNN monitor, metrics.jsonl.

Every random draw comes from a generator seeded by (seed, epoch, step[, rank]) (engine.seeds),
so any step replays identically: a run killed mid-epoch resumes at the step it stopped and ends
with the metrics of an uninterrupted run. The data order, the crops and the views are drawn for
the global batch, so N processes see exactly the images one process would; the pretext draws
inside ``task.prepare`` (angles, patch positions) and dropout are drawn per process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import CHECKPOINT, save_checkpoint
from ..config import RunConfig
from ..data.datasets import ImageData
from ..data.training import TrainingSource, iterate_batches
from ..errors import ConfigError
from ..files import write_json, write_jsonl
from ..interfaces import Callback, RunInfo, StepInfo
from ..plugins import Plugins, load_plugins
from .distributed import Placement, setup, teardown
from .evaluation import evaluate, precise_batchnorm
from .inputs import InputPipeline, make_crop, make_pipeline
from .metrics import EpochMeter, phase_key
from .model import Trainee, build_model, build_trainee, check_forward, sized_backbone
from .monitor import KnnMonitor, build_monitor
from .optim import set_group_lrs
from .precise_bn import PRECISE_BELOW_STEPS
from .precision import resolve_precision
from .run_data import TrainingData, load_training_data, with_statistics
from .rundir import Resume, RunLock, check_resumable, open_run, resumed_config
from .schedule import lr_factor
from .seeds import CROP, MODULE, ORDER, PRETEXT, generator, seed_of
from .step import forward_loss

METRICS = "metrics.jsonl"
REPORT_EVERY = 5  # steps between progress reports (each is a read-back from the device) ...
REPORT_SECONDS = 2.0  # ... or sooner when steps are slow: a display never sits still for long


@dataclass
class TrainResult:
    out_dir: Path
    config: RunConfig
    history: list[dict[str, Any]]

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


@dataclass
class Loop:
    """Everything the epochs share, set up once before the first step (:func:`_start`)."""

    config: RunConfig
    plugins: Plugins
    place: Placement
    out_dir: Path
    data: TrainingData
    source: TrainingSource  # the training split, on the device when it fits
    pipeline: InputPipeline
    t: Trainee
    steps: int  # per epoch, the same on every process
    callbacks: list[Callback]
    monitor: KnnMonitor | None = None
    state: dict[str, Any] | None = None  # the checkpoint resumed from
    start_epoch: int = 0
    start_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def local(self) -> int:
        return self.config.data.batch_size // self.place.world_size

    def checkpoint(self, epoch_done: int, step: int, partial: dict[str, Any] | None) -> None:
        """A checkpoint: the config, versions, where the run stands (epoch, step within the next
        epoch, that epoch's partial sums, history, resumes), the data's identity and all states."""
        d = self.data
        payload = {
            "config": self.config.model_dump(mode="json"),
            "sslkit_version": __version__,
            "plugins": self.plugins.versions(),
            "epoch": epoch_done,
            "step": step,
            "partial": partial or [],
            "history": self.history,
            "resumes": self.resumes,
            "data": {
                "description": d.description,
                "shape": [d.channels, self.pipeline.size, self.pipeline.size],
                "classes": d.classes,
                "images": d.images,
                "fingerprint": d.fingerprint,
            },
            **self.t.states(),
        }
        save_checkpoint(self.out_dir / CHECKPOINT, payload)


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
    new_folder = not out_dir.exists()
    try:
        with RunLock(out_dir) if place.is_main else nullcontext():  # one writer per run folder
            loop = _start(config, out_dir, plugins, resume, list(callbacks), place)
            for epoch in range(loop.start_epoch, loop.config.epochs):
                first = loop.start_step if epoch == loop.start_epoch else 0
                meter, lr = _train_epoch(loop, epoch, first)
                _end_epoch(loop, epoch, meter, lr)
            return TrainResult(out_dir, loop.config, loop.history)
    except BaseException:
        if new_folder and place.is_main and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that failed before writing anything leaves no folder behind
        raise
    finally:
        teardown(place)


def _start(
    config: RunConfig, out_dir: Path, plugins: Plugins, resume: Resume, callbacks: list[Callback], place: Placement
) -> Loop:
    """Data, model, input pipeline, optimiser and the checkpoint's state on a resume."""
    state = open_run(out_dir, resume, place.device)
    config = config.model_copy(update={"precision": resolve_precision(config.precision, place.device)})
    changes: dict[str, list[Any]] = {}
    if state is not None:
        config, changes = resumed_config(state["config"], config)
    if config.data.batch_size % place.world_size:
        raise ConfigError(
            f"data.batch_size {config.data.batch_size} must be divisible by the {place.world_size} processes"
        )
    data = load_training_data(config, plugins, place, callbacks)
    config = with_statistics(config, data)
    crop = make_crop(config, data.train, data.description)
    if state is not None:
        check_resumable(state, config, data.fingerprint, data.images)
    config = sized_backbone(config, crop.size, plugins)
    model = build_model(config, plugins)
    pipeline = make_pipeline(config, crop, model.task, data.channels)
    check_forward(model, pipeline, data.channels, config)  # before anything is written
    steps = max(1, len(data.train) // config.data.batch_size)  # the last partial batch dropped: equal steps
    model.task.setup(run_info(config, steps, place, crop.size))  # before a resume loads the task's state
    monitor = build_monitor(config, plugins, model.backbone, crop) if place.is_main else None
    t = build_trainee(config, model, place, pipeline, data.channels)
    loop = Loop(config, plugins, place, out_dir, data, _on_device(data.train, place), pipeline, t, steps, callbacks)
    loop.monitor, loop.state = monitor, state
    if state is not None:
        loop.start_epoch, loop.start_step, loop.history, loop.resumes = t.restore(state, changes)
    if place.is_main and (state is None or changes):  # config.json says what the run is now
        write_json(out_dir / "config.json", config.model_dump(mode="json"))
    info = _run_info(loop)
    for cb in callbacks:
        cb.on_start(info)
    return loop


def run_info(config: RunConfig, steps: int, place: Placement, image_size: int) -> RunInfo:
    """What a task is told before the first step (:meth:`sslkit.PretextTask.setup`)."""
    mean, std = config.data.mean, config.data.std
    assert mean is not None and std is not None  # filled from the data first
    return RunInfo(
        epochs=config.epochs,
        steps_per_epoch=steps,
        total_steps=config.epochs * steps,
        world_size=place.world_size,
        global_batch=config.data.batch_size,
        image_size=image_size,
        mean=tuple(mean),
        std=tuple(std),
        device=str(place.device),
    )


def _on_device(source: TrainingSource, place: Placement) -> TrainingSource:
    """RAM data onto the GPU when it is small (else pinned host memory, copied per batch)."""
    if place.device.type != "cuda" or not isinstance(source, ImageData):
        return source
    images = source.images
    return replace(source, images=images.to(place.device) if images.numel() < 2**31 else images.pin_memory())


def _train_epoch(loop: Loop, epoch: int, first: int) -> tuple[EpochMeter, float]:
    """Steps ``first`` .. ``steps - 1`` of ``epoch``; returns the epoch's sums and the last lr."""
    c, place, t, steps = loop.config, loop.place, loop.t, loop.steps
    device, rank, batch, local = place.device, place.rank, c.data.batch_size, loop.local
    n = len(loop.source)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed_of(c.seed, epoch, ORDER)))
    if n < batch:
        order = order.repeat(batch // n + 1)[:batch]  # tiny datasets: one full batch per epoch
    shares = [order[s * batch + rank * local : s * batch + (rank + 1) * local] for s in range(first, steps)]
    meter = EpochMeter(device)
    partial = loop.state.get("partial") if loop.state is not None and epoch == loop.start_epoch and first else None
    if partial and place.is_main:  # the interrupted epoch's sums, counted once (rank 0)
        meter.restore(partial)
    t.model.train()
    t0 = last_save = last_report = time.perf_counter()
    lr = t.optimizer.param_groups[0]["lr"]
    batches = iterate_batches(loop.source, shares, device, c.data.workers, c.data.decode)
    for step, loaded in enumerate(batches, start=first):  # uint8 [local, C, H, W] on the device
        x = loop.pipeline.train(loaded, generator(device, c.seed, epoch, step, CROP), batch, rank * local)
        lr = set_group_lrs(t.optimizer, c.optim.lr * lr_factor(c.schedule, c.epochs, epoch, step, steps))
        torch.manual_seed(seed_of(c.seed, epoch, step, MODULE, rank))  # module randomness (dropout)
        inputs, targets = t.model.task.prepare(x, generator(device, c.seed, epoch, step, PRETEXT, rank))
        out = forward_loss(
            t.model.task,
            t.step_model,
            inputs,
            targets,
            device=device,
            precision=c.precision,
            memory_format=t.channels_last,
            images=loaded.images.shape[0],
            name=str(c.task["name"]),
        )
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(out.loss.value).backward()
        if _optimizer_step(t):  # not after a step the fp16 scaler skipped (inf/NaN gradients)
            t.model.task.after_step(t.model.backbone, _step_info(loop, epoch, step))
        meter.add(out)
        if (
            step % REPORT_EVERY == REPORT_EVERY - 1
            or step == steps - 1
            or time.perf_counter() - last_report > REPORT_SECONDS
        ):
            _report(loop, epoch, step, meter, (step + 1 - first) * local, t0)
            last_report = time.perf_counter()
        last_save = _save_if_due(loop, epoch, step, meter, t0, last_save)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the epoch's clock stops when the device has finished
    meter.seconds += time.perf_counter() - t0
    return meter, lr


def _optimizer_step(t: Trainee) -> bool:
    """scaler.step + update; False when fp16's scaler skipped the step (a read-back, fp16 only)."""
    before = t.scaler.get_scale() if t.scaler.is_enabled() else None
    t.scaler.step(t.optimizer)
    t.scaler.update()
    return before is None or t.scaler.get_scale() >= before


def _step_info(loop: Loop, epoch: int, step: int) -> StepInfo:
    return StepInfo(
        global_step=epoch * loop.steps + step + 1,
        epoch=epoch,
        step=step,
        steps_per_epoch=loop.steps,
        total_steps=loop.config.epochs * loop.steps,
        world_size=loop.place.world_size,
        global_batch=loop.config.data.batch_size,
    )


def _report(loop: Loop, epoch: int, step: int, meter: EpochMeter, images: int, t0: float) -> None:
    """Running averages to the callbacks, and a stop on a loss that is no longer finite."""
    running = meter.running()  # a read-back: the clock below then counts finished work
    meter.check_finite(str(loop.config.task["name"]), epoch, step + 1, running)
    if loop.callbacks:
        metrics = {**running, "images_per_s": images / max(time.perf_counter() - t0, 1e-9)}
        for cb in loop.callbacks:
            cb.on_step(epoch, step + 1, loop.steps, metrics)


def _save_if_due(loop: Loop, epoch: int, step: int, meter: EpochMeter, t0: float, last_save: float) -> float:
    """A mid-epoch checkpoint every ``checkpoint.every_steps`` steps or ``every_minutes`` minutes."""
    c, world = loop.config.checkpoint, loop.place.world_size
    now = time.perf_counter()
    every_seconds = (c.every_minutes or 0) * 60
    due = (c.every_steps and (step + 1) % c.every_steps == 0) or _minutes_due(
        every_seconds, now - last_save, step, world, loop.place.device
    )
    if not due or step + 1 >= loop.steps:
        return last_save
    partial = meter.state(world, meter.seconds + now - t0)  # a collective: every process
    if loop.place.is_main:
        loop.checkpoint(epoch, step + 1, partial)
    return now


def _end_epoch(loop: Loop, epoch: int, meter: EpochMeter, lr: float) -> None:
    """The epoch's record: train metrics, precise BN, held-out metrics, the kNN monitor; then the
    checkpoint and metrics.jsonl (main process), the callbacks, and a barrier."""
    c, place, t = loop.config, loop.place, loop.t
    totals = meter.totals(place.world_size)
    meter.check_finite(str(c.task["name"]), epoch, loop.steps, totals)
    seconds = meter.seconds
    record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{phase_key("train", k): v for k, v in totals.items()}}
    record.update(images_per_s=loop.steps * c.data.batch_size / seconds, samples_per_s=meter.global_count / seconds)
    record["seconds"] = seconds
    t_eval = time.perf_counter()
    heldout = loop.data.heldout
    if heldout is not None and (epoch + 1) * loop.steps < PRECISE_BELOW_STEPS:  # every process: SyncBN
        record["precise_bn_batches"] = precise_batchnorm(t.model, loop.source, loop.pipeline, c, place, t.channels_last)
    if place.is_main:
        if heldout is not None:
            record.update(evaluate(t.model, heldout, loop.pipeline, c, place.device, t.channels_last))
        if loop.monitor is not None and loop.monitor.due(epoch + 1, c.epochs):
            record["knn_acc"] = loop.monitor.measure(t.model.backbone, place.device, c.precision, t.channels_last)
    # What the epoch spent beyond its steps (precise BN, held-out pass, kNN monitor): a run's
    # time is both, and a reproduction that reuses a finished run counts both from the history.
    record["eval_seconds"] = time.perf_counter() - t_eval
    loop.history.append(record)
    if place.is_main:
        loop.checkpoint(epoch + 1, 0, None)
        write_jsonl(loop.out_dir / METRICS, loop.history)  # rewritten whole: always matches the checkpoint
    for cb in loop.callbacks:
        cb.on_epoch_end(record)
    if place.world_size > 1:
        torch.distributed.barrier()


def _run_info(loop: Loop) -> dict[str, Any]:
    """What the callbacks are told once, before the first step."""
    c, place, t, data = loop.config, loop.place, loop.t, loop.data
    return {
        "device": str(place.device),
        "world_size": place.world_size,
        "train_images": len(loop.source),
        "heldout_images": 0 if data.heldout is None else len(data.heldout),
        "steps_per_epoch": loop.steps,
        "start_epoch": loop.start_epoch,
        "start_step": loop.start_step,
        "epochs": c.epochs,
        "dataset": data.description,
        "parameters": sum(p.numel() for p in t.model.backbone.parameters()),
        "channels_last": t.channels_last,
        "precision": c.precision,
        "out_dir": str(loop.out_dir),
        "image_size": loop.pipeline.size,
        "crop": "views" if loop.pipeline.has_views else loop.pipeline.crop.mode,
        "streaming": not isinstance(loop.source, ImageData),
        "knn_monitor": loop.monitor is not None,
    }


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
