"""What a mix of pretext tasks is made of and configured by: its task names, its options
(``task.<name>.*`` for each task, ``task.weights.<name>``, ``task.sampling``,
``task.bn_stats``) and its presets.

``rotation+context`` names the mix; ``rotation+`` is the mix of one task (the same numbers as
``rotation`` alone at the same seed: a check that mixing adds nothing of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from ..errors import ConfigError
from ..interfaces import Config, PretextTask
from ..mappings import deep_merge
from ..registry import MIX

SAMPLING = ("all", "alternate")
# Keys of the mix's own section: a task named like one of them cannot take part.
OWN_KEYS = ("name", "weights", "sampling", "bn_stats")
MAX_WEIGHT = 1e6


def mix_names(name: str) -> list[str]:
    """``"rotation+context"`` -> ``["rotation", "context"]``; ``"rotation+"`` -> ``["rotation"]``;
    one-line errors for an empty name or a task named twice."""
    parts = name.split(MIX)
    if len(parts) == 2 and parts[0] and not parts[1]:
        return parts[:1]
    if not all(parts):
        raise ConfigError(
            f"the mix '{name}' has an empty task name; join registered tasks with '{MIX}', e.g. rotation{MIX}context"
        )
    for i, part in enumerate(parts):
        if part in parts[:i]:
            raise ConfigError(
                f"the mix '{name}' names '{part}' twice; name each task once and weigh it with task.weights.{part}"
            )
        if part in OWN_KEYS or part.startswith(("_", "model_")) or "." in part:
            raise ConfigError(
                f"the task '{part}' cannot take part in a mix: its name would clash with the mix's own keys "
                f"(task.{part}); rename it in its plugin"
            )
    return parts


class _Weights(Config):
    @model_validator(mode="after")
    def _one_counts(self) -> _Weights:
        if not any(value > 0 for value in self.model_dump().values()):
            raise ValueError("every weight is 0; give at least one task a weight above 0")
        return self


class MixOptions(Config):
    """The options of the mix itself; each task's own options are a section named after it."""

    sampling: Literal["all", "alternate"] = Field(
        "all",
        description="all: every task on every step; alternate: one task per optimiser step, in the mix's order",
    )


def _part_field(name: str, task: type[PretextTask]) -> tuple[Any, Any]:
    """A task's options as a section of the mix's: its defaults, or required when it has none."""
    description = f"the {name} task's own options (task.{name}.*)"
    try:
        task.Config()
    except Exception:  # the task has options without defaults: the mix requires them too
        return task.Config, Field(description=description)
    return task.Config, Field(default_factory=task.Config, description=description)


def _bn_stats_field(names: Sequence[str]) -> tuple[Any, Any]:
    """``bn_stats``: ``all`` or one of the mix's task names (a choice, checked like any other)."""
    choices: Any = Literal[tuple(["all", *names])]
    description = (
        "whose inputs the backbone's BatchNorm running statistics (used by evaluation, probes and "
        "export) describe: all: every task's; a task's name: only that task's (e.g. rotation's whole "
        "images, not context's patches); training itself always uses batch statistics"
    )
    return choices, Field("all", description=description)


def mix_config(names: Sequence[str], tasks: Sequence[type[PretextTask]]) -> type[Config]:
    """The mix's Config: ``weights`` (a non-negative float per task, default 1), ``sampling``,
    ``bn_stats``, and each task's own Config under its name; every unknown key is an error."""
    each: dict[str, Any] = {
        n: (float, Field(1.0, ge=0, le=MAX_WEIGHT, description=f"weight of {n}'s loss")) for n in names
    }
    weights: Any = create_model("MixWeights", __base__=_Weights, **each)
    sections: dict[str, Any] = {n: _part_field(n, t) for n, t in zip(names, tasks, strict=True)}
    return create_model(
        "MixConfig",
        __base__=MixOptions,
        weights=(weights, Field(default_factory=weights, description="the loss is the weighted sum of the tasks'")),
        bn_stats=_bn_stats_field(names),
        **sections,
    )


def _nested(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A task's preset as a layer of the mix's config: its task options under ``task.<name>``."""
    layer = {k: v for k, v in overrides.items() if k != "task"}
    if "task" in overrides:
        layer["task"] = {name: dict(overrides["task"])}
    return layer


# Run-config sections a mix's preset merges key by key; any other (schedule, optim ...) is one
# recipe, taken whole from the first task whose preset sets it.
MERGED_SECTIONS = ("data", "task")


def _first_wins(first: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(later)
    for key, value in first.items():
        merge = key in MERGED_SECTIONS and isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = deep_merge(out[key], value) if merge else value
    return out


def mix_presets(
    names: Sequence[str], tasks: Sequence[type[PretextTask]]
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(presets, default) of a mix. A preset name of any task is a preset of the mix: each task
    contributes that preset, or its own default one, with its task options under its name. On
    the run's keys the first task in the mix wins: its epochs, its schedule and its optimiser
    (each section whole), its data keys, to which the others add those it leaves unset
    (``rotation+context``: RotNet's schedule and optimiser, context's ``data.crop_padding=0``).
    The default is the first task's default preset."""
    presets: dict[str, dict[str, Any]] = {}
    for preset in dict.fromkeys(p for t in tasks for p in t.presets):
        layer: dict[str, Any] = {}
        for name, task in reversed(list(zip(names, tasks, strict=True))):  # merged last: the first task wins
            chosen = preset if preset in task.presets else task.default_preset
            if chosen is not None:
                layer = _first_wins(_nested(name, task.presets.get(chosen, {})), layer)
        presets[preset] = layer
    default = next((t.default_preset for t in tasks if t.default_preset is not None), None)
    return presets, default
