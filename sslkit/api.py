"""The Python API in a few functions, in the style of ``timm``::

    import sslkit

    sslkit.list_backbones()                                   # ['alexnet', 'nin', 'resnet18', 'timm/*']
    sslkit.list_backbones("timm/resnet1*")                    # timm models, when timm is installed
    net = sslkit.create_backbone("nin", blocks=3, width=0.25)
    run = sslkit.train("rotation", backbone="nin", data="sample", out="runs/demo",
                       epochs=1, **{"backbone.width": 0.25, "data.subset": 512})
    run = sslkit.load("runs/demo")                           # the same Run, from disk
    features = run.embed(images)                              # [N, C]

:func:`train` builds the run config exactly as ``sslkit train`` does (defaults < the task's preset
< ``config`` file < keyword overrides), so every CLI option has a keyword here.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig, assemble, deep_merge, nested
from .engine.callbacks import RunContext
from .engine.rundir import Resume
from .errors import ConfigError
from .interfaces import Callback
from .plugins import Plugins, load_plugins
from .registry import Registry
from .run import LoadedRun, load_run

if TYPE_CHECKING:
    from .engine.trainer import TrainResult

__all__ = [
    "Run",
    "default_out",
    "list_backbones",
    "list_loggers",
    "list_probes",
    "list_tasks",
    "load",
    "optional_packages",
    "overrides_layer",
    "train",
    "train_config",
]


class Run(LoadedRun):
    """A trained run, as ``sslkit.load`` and ``sslkit.train`` return it: ``.backbone`` (eval mode,
    trained weights), ``.config``, ``.history``, ``.embed()``, and the two things the CLI does with
    a run, through the same entries: ``.export()`` (``sslkit export``) and ``.probe()``
    (``sslkit probe``)."""

    def export(self, out: str | Path | None = None, *, format: str = "onnx", **options: Any) -> Any:
        """Write the encoder as ``format`` (``onnx``, ``torch``, ``safetensors`` or a plugin's;
        options as ``sslkit export``'s: ONNX ``layer``, ``pool``, ``fp16``, ``images``; weights
        ``torchvision``). ``out`` defaults to the run folder's encoder.onnx / backbone.pt /
        backbone.safetensors; returns the export's report (``.path``, ``.summary()``)."""
        from .export.runner import export_run

        return export_run(self, format, out, plugins=self._plugins(), **options)

    def probe(
        self,
        data: str | None = None,
        *,
        probe: str = "knn",
        layers: Sequence[str] = (),
        test_data: str | None = None,
        progress: bool = True,
        **settings: Any,
    ) -> dict[str, Any]:
        """Train and evaluate ``probe`` on the frozen trunk (default data: the run's own dataset, as
        ``sslkit probe``); returns the report ``sslkit probe`` writes as probe.json
        (``report["layers"][layer]["test_acc"]``). ``settings`` are
        :class:`sslkit.probes.settings.ProbeSettings` fields (``options``, ``seed``, ``device`` ...).
        ``progress``: the display of ``sslkit probe`` (the feature pass, then a line per epoch)."""
        from .probes.runner import probe_run
        from .probes.settings import probe_settings
        from .progress import ProbeProgress

        chosen = probe_settings(probe=probe, layers=tuple(layers), **settings)
        observer = ProbeProgress() if progress else None
        return probe_run(self, chosen, self._plugins(), data=data, test_data=test_data, observer=observer)

    def embed(self, images: Any, *, progress: bool = True, **options: Any) -> Any:
        """:meth:`sslkit.run.LoadedRun.embed` with a progress bar over the images (``progress``)."""
        from .progress import CountBar, default_console

        if not progress:
            return super().embed(images, **options)
        with CountBar("embedding", default_console()) as bar:
            return super().embed(images, on_progress=bar.update, **options)

    @classmethod
    def of(cls, loaded: LoadedRun) -> Run:
        return loaded if isinstance(loaded, Run) else cls(**{f.name: getattr(loaded, f.name) for f in fields(loaded)})


def _names(registry: Registry[Any], pattern: str | None) -> list[str]:
    names = registry.names()
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def list_tasks(pattern: str | None = None, *, plugins: Plugins | None = None) -> list[str]:
    """Registered pretext task names, sorted; ``pattern`` is a shell glob (``"rot*"``)."""
    return _names((plugins or load_plugins()).tasks, pattern)


def list_backbones(pattern: str | None = None, *, plugins: Plugins | None = None) -> list[str]:
    """Registered backbone names, e.g. ``['alexnet', 'nin', 'resnet18', 'timm/*']``: a family
    (``timm/``, hundreds of models) shows as ``family/*`` as in ``sslkit plugins``, and its
    members are listed when the pattern names the family: ``list_backbones("timm/resnet1*")`` ->
    ``['timm/resnet10t', 'timm/resnet14t', 'timm/resnet18', ...]`` (timm installed)."""
    registry = (plugins or load_plugins()).backbones
    names = _names(registry, pattern)
    for family in registry.families():
        if pattern and pattern.startswith(family):
            names += [family + v for v in registry.get(family).list_variants(pattern[len(family) :] or "*")]
        elif not pattern or fnmatch.fnmatchcase(family + "*", pattern):
            names.append(family + "*")
    return names


def list_probes(pattern: str | None = None, *, plugins: Plugins | None = None) -> list[str]:
    """Registered probe names (``linear``, ``mlp``, ``conv``, ``knn`` and plugins')."""
    return _names((plugins or load_plugins()).probes, pattern)


def list_loggers(pattern: str | None = None, *, plugins: Plugins | None = None) -> list[str]:
    """Registered experiment loggers (``csv``, ``tensorboard``, ``wandb`` and plugins')."""
    return _names((plugins or load_plugins()).callbacks, pattern)


# Optional packages and what they enable: {distribution: (what, install command)}.
EXTRAS = {
    "timm": ("backbones timm/<model>", 'pip install "sslkit[timm]"'),
    "tensorboard": ("--logger tensorboard", 'pip install "sslkit[loggers]"'),
    "wandb": ("--logger wandb", 'pip install "sslkit[loggers]"'),
}


def optional_packages() -> dict[str, str | None]:
    """{package: installed version or None} for the optional backends (no import: fast)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in EXTRAS:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def load(run: str | Path, *, plugins: Plugins | None = None, map_location: str = "cpu") -> Run:
    """A run folder (or its checkpoint.pt) -> :class:`Run`: ``.backbone`` (eval mode,
    trained weights), ``.config``, ``.history``, ``.embed()``, ``.export()``, ``.probe()``."""
    return Run.of(load_run(run, plugins, map_location=map_location))


def overrides_layer(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword overrides -> a nested config layer: ``{"backbone.width": 0.25, "optim": {"lr": 0.05}}``
    -> ``{"backbone": {"width": 0.25}, "optim": {"lr": 0.05}}`` (dotted keys and dicts merge)."""
    return nested(overrides, "keyword")


def default_out(task: str, backbone: str) -> Path:
    """``runs/TASK-BACKBONE-YYYYmmdd-HHMMSS`` (a ``timm/x`` backbone becomes ``timm-x``)."""
    return Path("runs") / f"{task}-{backbone.replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _section(name_or_options: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if name_or_options is None:
        return {}
    if isinstance(name_or_options, str):
        return {"name": name_or_options}
    return dict(name_or_options)


def train(
    task: str | RunConfig,
    out: str | Path | None = None,
    *,
    backbone: str | Mapping[str, Any] | None = None,
    data: str | Mapping[str, Any] | None = None,
    preset: str | None = None,
    config: str | Path | None = None,
    loggers: Iterable[str] | str = (),
    callbacks: Sequence[Callback] = (),
    resume: Resume = False,
    plugins: Plugins | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Run:
    """Pretrain and return the trained :class:`Run` (checkpoint and metrics in ``out``).

    ``task``: a pretext task name (or a ready :class:`~sslkit.config.RunConfig`, then without
    overrides). ``backbone``/``data``: a name or folder, or a dict of that section's keys.
    ``overrides``: any config key, ``epochs=1``, ``**{"backbone.width": 0.25}`` or nested dicts
    (``optim={"lr": 0.05}``). ``loggers``: registered experiment loggers (``"csv"``,
    ``"tensorboard"``, ``"wandb"``). ``out`` defaults to ``runs/TASK-BACKBONE-TIME``.
    ``progress``: the same display as ``sslkit train`` (a live bar in a terminal or a notebook,
    plain lines in a log); ``False`` for none.
    """
    plugins = plugins or load_plugins()
    if isinstance(task, RunConfig):
        if overrides or backbone is not None or data is not None or preset or config:
            raise ConfigError("train(RunConfig): the config is complete; pass overrides with a task name instead")
        cfg = task
    else:
        layer = deep_merge({"backbone": _section(backbone), "data": _section(data)}, overrides_layer(overrides))
        cfg = assemble(task, plugins, preset=preset, config_file=config, flags=layer)
    out = Path(out) if out is not None else default_out(cfg.task["name"], cfg.backbone["name"])
    train_config(cfg, out, plugins=plugins, resume=resume, callbacks=callbacks, loggers=loggers, progress=progress)
    return Run.of(load_run(out, plugins))


def _checked(
    resume: Any, loggers: Iterable[str] | str, callbacks: Sequence[Any]
) -> tuple[Resume, list[str], list[Callback]]:
    """One-line errors for arguments of the wrong kind, before anything is written."""
    if not (resume is True or resume is False or resume == "auto"):  # 0, 1 or "yes" would pass a truth test
        raise ConfigError(f"resume={resume!r}: use False (a new run), True (continue the run in out) or 'auto'")
    names = [loggers] if isinstance(loggers, str) else list(loggers)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ConfigError(f"loggers: {bad[0]!r} is not a logger name; give names such as ['csv', 'tensorboard']")
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise ConfigError(
                f"callbacks[{i}] is a {type(cb).__name__}, not an sslkit.Callback: subclass sslkit.Callback"
            )
    return resume, names, list(callbacks)


def train_config(
    cfg: RunConfig,
    out: str | Path,
    *,
    plugins: Plugins,
    resume: Resume = False,
    callbacks: Sequence[Callback] = (),
    loggers: Iterable[str] | str = (),
    progress: bool = True,
    next_steps: bool = False,
) -> TrainResult:
    """The training loop as ``sslkit train`` and :func:`train` run it: the progress display (main
    process only; ``next_steps``: then the commands that use the run), the registered ``loggers``
    (built before training starts, so an unknown name or a missing package fails first), and
    every callback's ``on_train_end`` called afterwards, also when training fails."""
    import os

    from .engine.trainer import train as train_loop
    from .loggers import create_loggers
    from .progress import make_progress

    resume, loggers, callbacks = _checked(resume, loggers, callbacks)
    main_process = int(os.environ.get("RANK", "0")) == 0
    display = make_progress() if progress and main_process else None
    every = [*(create_loggers(loggers, RunContext(cfg, Path(out), plugins)) if main_process else []), *callbacks]
    every += [display] if display is not None else []
    result = None
    try:
        result = train_loop(cfg, out, plugins=plugins, resume=resume, callbacks=every)
    finally:
        for cb in every:
            cb.on_train_end(result)
    if display is not None:
        display.finish(result, next_steps=next_steps)
    return result
