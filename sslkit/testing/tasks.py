"""``check_task``: a pretext task keeps the contracts the engine relies on.

Classification tasks (rotation, context, jigsaw) and today's methods (two views, EMA targets,
losses that are not classification) are checked alike, through what the engine itself does: the
declared views are drawn by the engine's own code, the loss goes through :func:`sslkit.as_loss`,
and ``after_step`` is called after every optimiser step of the fit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import RunConfig, deep_merge, validate_section
from ..data.augment import standardize
from ..data.views import check_views, draw_views
from ..errors import SSLKitError
from ..interfaces import Backbone, Config, Loss, PretextTask, RunInfo, StepInfo, as_loss
from ..plugins import Plugins, load_plugins
from .common import (
    SMALL_NIN,
    ConformanceError,
    Report,
    _config,
    _device,
    _fail,
    _fit,
    _in_full_fp32,
    _resolve,
    _round_trip,
    _same,
    _tensors,
    _to_channels_last,
    synthetic_images,
)

MEAN, STD = 0.5, 0.25  # the normalisation the checks' synthetic runs use


def _build_backbone(spec: Any, options: Mapping[str, Any] | None, plugins: Plugins | None) -> Callable[[], Backbone]:
    if isinstance(spec, Backbone):
        state = copy.deepcopy(spec)
        return lambda: copy.deepcopy(state)
    if isinstance(spec, str):
        plugins = plugins if plugins is not None else load_plugins()
        cls = plugins.backbones.get(spec)
        if options is None and spec == "nin":
            options = SMALL_NIN
    else:
        cls = spec
    config = validate_section(cls.Config, dict(options or {}), "backbone.")
    return lambda: cls(config)


@dataclass
class _Case:
    """One task under test: how to build it, and the batch the engine would feed it."""

    report: Report
    cls: type[PretextTask]
    config: Config
    make_backbone: Callable[[], Backbone]
    device: torch.device
    image_size: int
    channels: int
    batch: int
    steps: int

    def build(self, seed: int) -> tuple[Backbone, PretextTask]:
        torch.manual_seed(seed)
        backbone = self.make_backbone().to(self.device)
        keys = set(backbone.state_dict())
        task = self.cls(self.config, backbone).to(self.device)
        if set(backbone.state_dict()) != keys:
            raise _fail(self.report, "building the task changed the backbone's modules (keep the head in the task)")
        task.setup(self.run_info())
        return backbone, task

    def run_info(self) -> RunInfo:
        c = self.channels
        return RunInfo(
            1, self.steps, self.steps, 1, self.batch, self.image_size, (MEAN,) * c, (STD,) * c, str(self.device)
        )

    def task_input(self, task: PretextTask, seed: int) -> Any:
        """What the engine passes to ``prepare``: normalised images, or the task's views drawn by
        the engine's own code (in [0, 1] for raw-pixel tasks); for a task made of parts (a mix),
        ``{part: that part's input}``."""
        parts = task.parts()
        if parts:
            return {name: self._input(part, seed) for name, part in parts.items()}
        return self._input(task, seed)

    def _input(self, task: PretextTask, seed: int) -> Tensor | list[Tensor]:
        images = synthetic_images(self.batch, self.channels, self.image_size, seed, self.device)
        pixels = (images * STD + MEAN).clamp(0, 1)  # [B, C, S, S] in [0, 1]
        views = task.views()
        if views is None:
            return pixels if task.raw_pixels else images
        views = tuple(views)
        try:
            check_views(views, self.image_size, self.channels, self.report.name)
        except SSLKitError as exc:
            raise _fail(self.report, f"views(): {exc}") from None
        uint8 = (pixels * 255).round().to(torch.uint8)
        drawn = draw_views(uint8, None, views, self.image_size, torch.Generator(device=self.device).manual_seed(seed))
        return (
            drawn
            if task.raw_pixels
            else [standardize(v, (MEAN,) * self.channels, (STD,) * self.channels) for v in drawn]
        )


def _check_presets(report: Report, cls: type[PretextTask], name: str) -> None:
    for preset, overrides in dict(cls.presets).items():
        raw = deep_merge({"task": {"name": name}, "backbone": {"name": "nin"}}, overrides)
        try:
            validate_section(RunConfig, raw, "")
        except Exception as exc:
            raise _fail(report, f"preset '{preset}' is not a valid run-config override: {exc}") from None
    if cls.default_preset is not None and cls.default_preset not in cls.presets:
        raise _fail(report, f"default_preset '{cls.default_preset}' is not one of its presets {sorted(cls.presets)}")
    report.ok("config and presets")


def _check_prepare(case: _Case, task: PretextTask, x: Any, seed: int) -> tuple[Any, Tensor | None]:
    report, dev = case.report, case.device

    def draw() -> tuple[Any, Tensor | None]:
        return task.prepare(x, torch.Generator(device=dev).manual_seed(seed))

    inputs, targets = draw()
    if targets is not None and (not isinstance(targets, Tensor) or targets.dtype != torch.int64 or targets.dim() != 1):
        raise _fail(
            report,
            "prepare() must return targets as a 1-D int64 tensor (or None), got "
            f"{getattr(targets, 'dtype', type(targets).__name__)} {list(getattr(targets, 'shape', []))}",
        )
    for t in [*_tensors(inputs), *_tensors(targets)]:
        if t.device.type != dev.type:
            raise _fail(
                report, f"prepare() returned a tensor on {t.device} for images on {dev} (generate on their device)"
            )
    again_inputs, again_targets = draw()
    if not (_same(inputs, again_inputs) and _same(targets, again_targets)):
        raise _fail(
            report, "prepare() gives different results for the same seeded generator (draw randomness only from it)"
        )
    report.ok("prepare: targets, device, determinism" + (", views" if isinstance(x, list) else ""))
    return inputs, targets


def _loss(report: Report, task: PretextTask, outputs: Any, targets: Tensor | None) -> Loss:
    try:
        return as_loss(task.loss(outputs, targets), report.name)
    except SSLKitError as exc:
        raise ConformanceError(str(exc)) from None


def _check_logits(report: Report, outputs: Any, targets: Tensor | None) -> None:
    """Classification tasks (2-d outputs and targets): logits [M, K], targets in [0, K)."""
    if not (isinstance(outputs, Tensor) and outputs.dim() == 2 and targets is not None):
        return
    if outputs.shape[0] != targets.shape[0]:
        raise _fail(
            report,
            f"forward() must return logits [M, K] with M = {targets.shape[0]} targets, got {list(outputs.shape)}",
        )
    k = outputs.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= k):
        raise _fail(
            report, f"targets must lie in [0, {k}) for {k} logits, got [{int(targets.min())}, {int(targets.max())}]"
        )
    if not torch.isfinite(outputs).all():
        raise _fail(report, "logits are not finite")


def _check_outputs(case: _Case, backbone: Backbone, task: PretextTask, inputs: Any, targets: Tensor | None) -> Any:
    """Eval-mode outputs, their loss and correct count (classification tasks: logits [M, K])."""
    report = case.report
    task.eval(), backbone.eval()
    with torch.no_grad():
        outputs = task(backbone, inputs)
        _check_logits(report, outputs, targets)
        loss = _loss(report, task, outputs, targets)
        correct = task.correct(outputs, targets)
    if not torch.isfinite(loss.value) or not all(torch.isfinite(v) for v in loss.metrics.values()):
        raise _fail(report, "the loss or a metric is not finite")
    if correct is not None:
        m = targets.shape[0] if targets is not None else case.batch
        if not isinstance(correct, Tensor) or correct.ndim != 0 or not 0 <= float(correct) <= m:
            raise _fail(report, f"correct() must return a 0-dim count in [0, {m}] or None, got {correct!r}")
    report.ok("outputs, loss" + (" and metrics " + ", ".join(loss.metrics) if loss.metrics else "") + ", correct")
    return outputs


def _check_determinism(
    case: _Case, backbone: Backbone, task: PretextTask, inputs: Any, outputs: Any, seed: int
) -> None:
    bb2, task2 = case.build(seed)
    task2.eval(), bb2.eval()
    with torch.no_grad():
        if not _same(outputs, task2(bb2, inputs)):
            raise _fail(case.report, f"two builds under torch.manual_seed({seed}) give different outputs")
        cl_bb = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
        cl_task = copy.deepcopy(task).to(memory_format=torch.channels_last)
        if not _same(outputs, cl_task(cl_bb, _to_channels_last(inputs)), atol=1e-4):
            raise _fail(case.report, "channels_last inputs and weights give different outputs")
    case.report.ok("deterministic under a seed, channels_last")


def _check_round_trip(case: _Case, backbone: Backbone, task: PretextTask, inputs: Any, outputs: Any, seed: int) -> None:
    fresh_bb, fresh_task = case.build(seed + 1)
    _round_trip(backbone, fresh_bb)
    _round_trip(task, fresh_task)
    fresh_bb.eval(), fresh_task.eval()
    with torch.no_grad():
        if not _same(outputs, fresh_task(fresh_bb, inputs)):
            raise _fail(
                case.report,
                "a fresh task loaded from state_dict gives different outputs (keep all state in parameters or buffers)",
            )
    case.report.ok("checkpoint round trip")


def _state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _check_state(case: _Case, inputs: Any, targets: Tensor | None, seed: int) -> None:
    """The engine's contracts on a task's modules and state (see "What the engine does with your
    task"), on a build of its own: the training pass below moves BatchNorm statistics."""
    report = case.report
    backbone, task = case.build(seed)
    shared = {id(p) for p in backbone.parameters()} & {id(p) for p in task.parameters()}
    if shared:
        raise _fail(
            report, "the task holds the backbone's parameters as its own (checkpoints and exports would duplicate them)"
        )
    before = _state(task)
    task.eval(), backbone.eval()
    with torch.no_grad():
        task(backbone, inputs)
    if not _same(before, _state(task)):
        raise _fail(
            report, "an evaluation pass (eval mode, no gradient) changed the task's state: update it in after_step"
        )
    frozen = {n: p.detach().clone() for n, p in task.named_parameters() if not p.requires_grad}
    task.train(), backbone.train()
    outputs = task(backbone, inputs)
    _check_logits(report, outputs, targets)
    value = _loss(report, task, outputs, targets).value
    if not value.requires_grad:
        raise _fail(report, "the loss does not depend on any trainable parameter (detached logits?)")
    value.backward()
    for n, p in task.named_parameters():
        if not p.requires_grad and (p.grad is not None or not torch.equal(p.detach(), frozen[n])):
            raise _fail(
                report, f"frozen parameter '{n}' changed or got a gradient in a training pass: update it in after_step"
            )
    task.zero_grad(set_to_none=True)
    backbone.zero_grad(set_to_none=True)
    report.ok(
        "state: no shared backbone, evaluation leaves it, frozen parameters untouched"
        + (f" ({len(frozen)})" if frozen else "")
    )


def _check_learning(
    case: _Case, backbone: Backbone, task: PretextTask, inputs: Any, targets: Tensor | None, lr: float
) -> None:
    backbone.train(), task.train()
    params = [p for p in [*backbone.parameters(), *task.parameters()] if p.requires_grad]
    step = 0

    def loss() -> Tensor:
        nonlocal step
        if step:  # after the previous optimiser step, as the engine calls it
            task.after_step(backbone, StepInfo(step, 0, step - 1, case.steps, case.steps, 1, case.batch))
        step += 1
        return _loss(case.report, task, task(backbone, inputs), targets).value

    # The same pretext draw every step: a fixed batch the model can fit.
    _fit(case.report, params, loss, steps=case.steps, lr=lr)


@_in_full_fp32
def check_task(
    task: str | type[PretextTask],
    *,
    options: Mapping[str, Any] | None = None,
    backbone: str | type[Backbone] | Backbone = "nin",
    backbone_options: Mapping[str, Any] | None = None,
    plugins: Plugins | None = None,
    image_size: int = 32,
    channels: int = 3,
    batch: int = 4,
    steps: int = 8,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Report:
    """Check a pretext task's contracts on ``backbone`` (default: a small NIN, 3 blocks, width 0.1)."""
    if isinstance(task, str) and plugins is None:
        plugins = load_plugins()
    name, cls = _resolve("pretext task", "tasks", PretextTask, task, plugins)
    report = Report("pretext task", name)
    _check_presets(report, cls, name)
    make_backbone = _build_backbone(backbone, backbone_options, plugins)
    config = _config(cls.Config, options, "task.")
    case = _Case(report, cls, config, make_backbone, _device(device), image_size, channels, batch, steps)
    bb, model = case.build(seed)
    inputs, targets = _check_prepare(case, model, case.task_input(model, seed), seed)
    _check_state(case, inputs, targets, seed)
    outputs = _check_outputs(case, bb, model, inputs, targets)
    _check_determinism(case, bb, model, inputs, outputs, seed)
    _check_round_trip(case, bb, model, inputs, outputs, seed)
    _check_learning(case, bb, model, inputs, targets, lr)
    return report
