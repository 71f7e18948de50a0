"""Experiment loggers: ``sslkit train ... --logger csv|tensorboard|wandb`` (repeatable).

Each logger is a :class:`~sslkit.interfaces.Callback` registered through the
``register_callbacks`` hook (the built-in ones by :mod:`sslkit.loggers.plugin`), so a third
party adds its own exactly the same way. What every built-in logger records: the scalars of the
step callbacks (running loss, pretext accuracy, images/s) against the global step, the epoch
records of metrics.jsonl against the epoch, the run config as hyper-parameters, and, where the
backend shows pictures, the ``show-batch`` picture and the training curves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..engine.callbacks import RunContext
from ..errors import PluginError
from ..interfaces import Callback

LOGGER_EXTRA = 'pip install "sslkit[loggers]"'


def create_loggers(names: Iterable[str], context: RunContext) -> list[Callback]:
    """The registered loggers ``names`` (unknown names: one-line error), built for ``context``."""
    out: list[Callback] = []
    for name in dict.fromkeys(names):  # once each, in the order given
        cls = context.plugins.callbacks.get(name)
        out.append(cls(context))
    return out


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists become strings (hyper-parameter tables
    take scalars only), None becomes 'none'."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            out[f"{prefix}{key}"] = str(list(value))
        else:
            out[f"{prefix}{key}"] = "none" if value is None else value
    return out


def need(module: str, logger: str) -> Any:
    """Import an optional backend, or a one-line error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise PluginError(f"--logger {logger} needs the {module.split('.')[0]} package: {LOGGER_EXTRA}") from None


class StepCounter(Callback):
    """Keeps the global step (epoch * steps per epoch + step) and the epoch records."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.steps_per_epoch = 1
        self.history: list[dict[str, Any]] = []

    def on_start(self, info: dict[str, Any]) -> None:
        self.steps_per_epoch = int(info["steps_per_epoch"])

    def global_step(self, epoch: int, step: int) -> int:
        return epoch * self.steps_per_epoch + step

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        self.history.append(dict(record))
