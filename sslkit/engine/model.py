"""The model a run trains and what a step changes: backbone + task as one module, its device
placement (SyncBN, channels_last, DDP, compile), the optimiser and the gradient scaler, and the
states a checkpoint keeps.

What the engine does with a task's modules: they are part of this one module, so they move to
the device, enter ``channels_last``, are checkpointed (``task`` in the checkpoint) and their
BatchNorms are synchronised across processes like the backbone's. Parameters with
``requires_grad=False`` (an EMA target) are left out of the optimiser and of DDP's gradient
sync. Only the backbone is ever exported.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ..config import RunConfig
from ..data.batches import Batch
from ..errors import ConfigError, PluginError, SSLKitError
from ..factory import create_backbone, create_task
from ..interfaces import Backbone, PretextTask
from ..plugins import Plugins
from .distributed import Placement
from .inputs import InputPipeline
from .optim import make_optimizer
from .seeds import generator
from .step import forward_loss
from .syncbn import convert_sync_batchnorm

log = logging.getLogger(__name__)


class PretextModel(nn.Module):
    """Backbone + task (which owns the head) as one module, so DDP and torch.compile see both."""

    def __init__(self, backbone: Backbone, task: PretextTask) -> None:
        super().__init__()
        self.backbone = backbone
        self.task = task

    def forward(self, inputs: Any) -> Any:
        return self.task(self.backbone, inputs)


def sized_backbone(config: RunConfig, size: int, plugins: Plugins) -> RunConfig:
    """A backbone whose options include ``image_size`` (models built for one input size, such as a
    vision transformer) gets the run's training size when none was given; the checkpoint's
    config then says what it was built for."""
    spec = config.backbone
    fields = plugins.backbones.get(spec["name"]).Config.model_fields
    if "image_size" not in fields or spec.get("image_size") is not None:
        return config
    return config.model_copy(update={"backbone": {**spec, "image_size": size}})


def check_forward(model: PretextModel, pipeline: InputPipeline, channels: int, config: RunConfig) -> None:
    """One forward pass on two blank images before anything is written: a backbone that cannot
    take the training size, or a task that does not fit the backbone, is a one-line error naming
    both, not a traceback after the run folder was made."""
    x = torch.zeros(2, channels, pipeline.size, pipeline.size, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            inputs, _ = model.task.prepare(pipeline.train(Batch(x), g), g)
            model(inputs)
    except SSLKitError:
        raise
    except Exception as exc:  # plugin code: any failure is this pairing's, with its own first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise PluginError(
            f"task '{config.task['name']}' on backbone '{config.backbone['name']}' fails on {pipeline.size}-px "
            f"images ({type(exc).__name__}: {first}); check data.image_size and the backbone's options"
        ) from None
    finally:
        model.train(was_training)


def build_model(config: RunConfig, plugins: Plugins) -> PretextModel:
    """The backbone and task a config describes, freshly initialised (seeded by config.seed)."""
    torch.manual_seed(config.seed)
    b_opts = {k: v for k, v in config.backbone.items() if k != "name"}
    t_opts = {k: v for k, v in config.task.items() if k != "name"}
    backbone = create_backbone(config.backbone["name"], plugins, **b_opts)
    return PretextModel(backbone, create_task(config.task["name"], backbone, plugins, **t_opts))


@dataclass
class Trainee:
    """What a step changes: the model (and its DDP/compiled wrapper), optimizer, scaler."""

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


def _has_unused_parameters(model: PretextModel, pipeline: InputPipeline, channels: int, device: torch.device) -> bool:
    """Whether a training step leaves some trainable parameters without a gradient (a task that
    reads a middle stage, e.g. jigsaw's ``task.stage``): DDP then needs ``find_unused_parameters``."""
    probe = copy.deepcopy(model).train()
    x = torch.randint(0, 256, (2, channels, pipeline.size, pipeline.size), dtype=torch.uint8, device=device)
    g = generator(device, 0)
    inputs, targets = probe.task.prepare(pipeline.train(Batch(x), g), g)
    out = forward_loss(
        probe.task, probe, inputs, targets, device=device, precision="fp32", memory_format=False, images=2, name="probe"
    )
    out.loss.value.backward()
    return any(p.requires_grad and p.grad is None for p in probe.parameters())


def _check_compile(config: RunConfig, place: Placement) -> None:
    if config.compile and config.sync_batchnorm and place.world_size > 1 and place.device.type == "cuda":
        raise ConfigError(
            "compile=true with sync_batchnorm=true on several GPUs: torch.compile breaks its graph at every "
            "SyncBatchNorm; set sync_batchnorm=false (per-GPU statistics) or compile=false"
        )


def build_trainee(
    config: RunConfig, model: PretextModel, place: Placement, pipeline: InputPipeline, channels: int
) -> Trainee:
    """The model on the device (SyncBN, channels_last, DDP, compile as configured) and its optimizer."""
    _check_compile(config, place)
    device, world = place.device, place.world_size
    model = model.to(device)
    if world > 1 and config.sync_batchnorm:
        # Before the optimizer sees the parameters; same names, so checkpoints are unchanged.
        convert_sync_batchnorm(model, device)
    channels_last = bool(config.channels_last) if config.channels_last is not None else device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config.optim, device)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    step_model: nn.Module = model
    if world > 1:
        unused = _has_unused_parameters(model, pipeline, channels, device)
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
    if config.compile:
        # An nn.Module compiles to an OptimizedModule (a Module); torch's stub only promises a callable.
        step_model = cast(nn.Module, torch.compile(step_model))
    return Trainee(model, step_model, optimizer, scaler, channels_last)
