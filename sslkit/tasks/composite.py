"""Several pretext tasks trained at once on one backbone: ``sslkit train rotation+context``.

Doersch & Zisserman, "Multi-task Self-Supervised Visual Learning", ICCV 2017, sec. 3: one trunk,
a head per task, the tasks' losses added. Here each task keeps everything it has alone:

- its input: the engine feeds each task as it would feed it alone (its crop or its views) from
  the same images of the step (:meth:`sslkit.PretextTask.parts`);
- its draws: each task's ``prepare`` draws from its own copy of the step's generator, so its
  angles, patch positions and permutations are the ones it would draw alone, whatever else is in
  the mix (and per process, as alone). Each head sees only its own task's inputs, so two tasks'
  draws coinciding teaches neither head anything;
- its head, loss, accuracy and metrics; the loss of the mix is the weighted sum
  ``sum_t task.weights.t * loss_t`` and each task's loss, accuracy and metrics are reported as
  ``<task>/loss``, ``<task>/acc``, ``<task>/<metric>`` (``<task>/train_loss``,
  ``<task>/heldout_acc`` in metrics.jsonl);
- its ``setup`` and ``after_step`` (after every optimiser step, whichever tasks it trained).

``task.bn_stats=<task>`` keeps the backbone's BatchNorm running statistics to that task's inputs.
Training never reads them (BatchNorm normalises by batch statistics, each task's forward on its
own), but evaluation, probes and the exported encoder do: in ``rotation+context`` the default
(``all``) averages whole images with context's 8-px patches, and whole images read through such
statistics lost about a point of block2 kNN accuracy against the same trunk with rotation's
statistics (measured on the multitask-cifar10 quick trunk).

``task.sampling=alternate`` trains one task per optimiser step, in the mix's order (the count of
steps is a buffer, so a resumed run goes on with the right task); passes without gradients
(evaluation, precise BatchNorm) run them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..errors import PluginError, UnknownNameError
from ..interfaces import Backbone, Config, Loss, PretextTask, RunInfo, StepInfo, as_loss, copy_generator
from ..registry import Registry
from .mix_config import mix_config, mix_names, mix_presets

Part = tuple[Any, Tensor | None, int]  # a task's (inputs or outputs, targets, images of the step)


def composite_class(name: str, tasks: Registry[Any]) -> type[CompositeTask]:
    """The task class of the mix ``name`` ("rotation+context"), its parts looked up in ``tasks``."""
    names = mix_names(name)
    kinds: list[type[PretextTask]] = []
    for part in names:
        try:
            kinds.append(tasks.get(part))
        except UnknownNameError as exc:
            raise UnknownNameError(f"the mix '{name}': {exc}") from None
    presets, default = mix_presets(names, kinds)
    attrs = {
        "Config": mix_config(names, kinds),
        "presets": presets,
        "default_preset": default,
        "names": tuple(names),
        "kinds": tuple(kinds),
    }
    return cast("type[CompositeTask]", type("CompositeTask", (CompositeTask,), attrs))


def _reread_steps(module: nn.Module, incompatible: Any) -> None:
    """After a checkpoint is loaded: the step count the alternation reads without a device sync."""
    task = cast("CompositeTask", module)
    task._steps_done = int(cast(Tensor, task.steps_done))


@contextmanager
def _running_stats_kept(backbone: nn.Module) -> Iterator[None]:
    """The backbone's BatchNorms normalise by batch statistics, as in any training forward, but
    leave their running statistics (and batch count, which precise BN's average divides by) as
    they are: ``track_running_stats=False`` in train mode does exactly that."""
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def _images(x: Tensor | list[Tensor]) -> int:
    return int(x.shape[0]) if isinstance(x, Tensor) else int(x[0].shape[0])


class CompositeTask(PretextTask):
    """The tasks of a mix on one backbone (see the module docstring); built by
    :func:`composite_class` for a name such as ``rotation+context``."""

    names: tuple[str, ...] = ()
    kinds: tuple[type[PretextTask], ...] = ()

    def __init__(self, config: Config, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        # Built in the mix's order after the backbone: the mix of one task initialises its head
        # from the same random numbers as the task alone.
        options: Any = config  # the mix's Config, built for its tasks (mix_config): fields by task name
        kinds = zip(self.names, self.kinds, strict=True)
        self.tasks = nn.ModuleDict({n: k(getattr(options, n), backbone) for n, k in kinds})
        self.weights = {n: float(getattr(options.weights, n)) for n in self.names}
        self.sampling: str = options.sampling
        self.bn_stats: str = options.bn_stats
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.int64))
        self._steps_done = 0  # the buffer's value on the host: read every step, never synced back
        self.register_load_state_dict_post_hook(_reread_steps)

    def parts(self) -> Mapping[str, PretextTask]:
        return {n: self.task(n) for n in self.names}

    def task(self, name: str) -> PretextTask:
        """The mix's task ``name`` (its head, its own options as ``.config``)."""
        return cast(PretextTask, self.tasks[name])

    def active(self) -> tuple[str, ...]:
        """The tasks this step trains: all, or one per step with ``sampling=alternate``. A pass
        that learns nothing runs them all: evaluation (eval mode), and precise BatchNorm (train
        mode without gradients), whose statistics then describe every task's inputs."""
        if self.training and torch.is_grad_enabled() and self.sampling == "alternate":
            return (self.names[self._steps_done % len(self.names)],)
        return self.names

    def setup(self, run: RunInfo) -> None:
        super().setup(run)
        for task in self.parts().values():
            task.setup(run)

    def prepare(self, images: Any, generator: torch.Generator) -> tuple[dict[str, Part], None]:
        """{task: its input} -> ({task: (inputs, targets, images)}, None): each task's own
        ``prepare`` on its own copy of ``generator``; the generator then goes on from where the
        first task left it (an evaluation's draws continue over its batches, as alone)."""
        if not isinstance(images, Mapping):
            raise PluginError("a mix of tasks takes {task: input}; feed it through the engine's input pipeline")
        batch: dict[str, Part] = {}
        after = None
        for name in self.active():
            g = copy_generator(generator)
            inputs, targets = self.task(name).prepare(images[name], g)
            batch[name] = (inputs, targets, _images(images[name]))
            after = g.get_state() if after is None else after
        if after is not None:
            generator.set_state(after)
        return batch, None

    def forward(self, backbone: Backbone, inputs: Mapping[str, Part]) -> dict[str, Part]:
        out: dict[str, Part] = {}
        for name, (x, t, m) in inputs.items():
            keep = self.training and self.bn_stats not in ("all", name)
            with _running_stats_kept(backbone) if keep else nullcontext():
                out[name] = (self.task(name)(backbone, x), t, m)
        return out

    def loss(self, outputs: Any, targets: Tensor | None) -> Loss:
        """The weighted sum of the tasks' losses, each task's loss, accuracy and metrics named
        after it."""
        total: Tensor | None = None
        metrics: dict[str, Tensor] = {}
        for name, (out, tgt, images) in outputs.items():
            task = self.task(name)
            part = as_loss(task.loss(out, tgt), name)
            weighted = part.value * self.weights[name]
            total = weighted if total is None else total + weighted
            metrics[f"{name}/loss"] = part.value.detach()
            with torch.no_grad():
                correct = task.correct(out, tgt)
            if correct is not None:  # the engine's accuracy: correct over the task's samples
                metrics[f"{name}/acc"] = correct.double() / (tgt.shape[0] if tgt is not None else images)
            metrics.update({f"{name}/{k}": v for k, v in part.metrics.items()})
        if total is None:
            raise PluginError("a mix of tasks got no task's outputs")
        return Loss(total, metrics)

    def correct(self, outputs: Any, targets: Tensor | None) -> Tensor | None:
        return None  # one accuracy per task (in the loss's metrics), none for the mix

    def after_step(self, backbone: Backbone, step: StepInfo) -> None:
        for task in self.parts().values():
            task.after_step(backbone, step)
        self._steps_done = step.global_step
        cast(Tensor, self.steps_done).fill_(step.global_step)

    def preview(self, inputs: Any, targets: Tensor | None) -> list[tuple[list[Tensor], str]]:
        """Each task's own preview, captions prefixed with its name."""
        return [
            (images, f"{name}: {caption}")
            for name, (x, t, _) in inputs.items()
            for images, caption in self.task(name).preview(x, t)
        ]
