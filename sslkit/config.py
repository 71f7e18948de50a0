"""The run configuration and how it is assembled.

Layers, later wins: built-in defaults < the task's preset < ``--config FILE`` < ``--set a.b=c``
< explicit CLI flags (``--epochs``, ``--backbone`` ...). ``task`` and ``backbone`` sections
hold ``name`` plus that plugin's own options, validated by the plugin's ``Config`` class, so a
typo anywhere is caught before training starts with a one-line error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .mappings import deep_merge
from .registry import suggest

if TYPE_CHECKING:
    from .plugins import Plugins


# Upper bounds where a huge value would allocate terabytes, fork without end or overflow (a typo
# such as data.image_size=100000 must be a one-line error, not a 15 TB allocation).
MAX_IMAGE_SIZE = 4096  # pixels a side
MAX_BATCH = 65_536  # images a step
MAX_WORKERS = 256  # DataLoader processes
MAX_EPOCHS = 100_000
MAX_MINUTES = 100_000.0  # ~70 days
MAX_SEED = 2**63  # exclusive: a seed is a non-negative int64 (torch.Generator.manual_seed, checkpoints)
Fraction = Annotated[float, Field(gt=0, le=1)]
Ratio = Annotated[float, Field(gt=0, le=100)]
Unit = Annotated[float, Field(ge=0, le=1)]
Spread = Annotated[float, Field(gt=0, le=1)]
Epoch = Annotated[int, Field(ge=0, le=MAX_EPOCHS)]


class _Section(BaseModel):
    # allow_inf_nan=False: every float (tuple items too) must be finite: nan and inf are typos here
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"the first value (min) is larger than the second (max); write [{value[1]}, {value[0]}]")
    return value


class DataConfig(_Section):
    name: str = Field("sample", description="registered dataset name, or a folder of images")
    batch_size: int = Field(
        128, ge=1, le=MAX_BATCH, description="images per step over all processes, before pretext expansion"
    )
    holdout: float = Field(
        0.05, ge=0.0, lt=0.5, description="fraction of training images held out for pretext accuracy"
    )
    subset: int | None = Field(None, ge=1, le=2**40, description="train on a random subset of this many images")
    exclude_test: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="leave out the seeded fraction that the probes carve as their test split (for data without one)",
    )
    image_size: int | None = Field(
        None,
        ge=8,
        le=MAX_IMAGE_SIZE,
        description="training input size in pixels (default: the images' own size when they all share one)",
    )
    crop: Literal["auto", "pad_crop", "random_resized", "center"] = Field(
        "auto",
        description=(
            "pad_crop: random crop of the zero-padded image (CIFAR); random_resized: a random box per image "
            "resampled to image_size; center: the central square; auto: pad_crop when the images already have "
            "the training size, else random_resized"
        ),
    )
    crop_padding: int = Field(4, ge=0, le=256, description="pad_crop: zero padding on each side (0: no crop)")
    crop_scale: tuple[Fraction, Fraction] = Field(
        (0.08, 1.0), description="random_resized: range [min, max] of the box's area fraction, each in (0, 1]"
    )
    crop_ratio: tuple[Ratio, Ratio] = Field(
        (3 / 4, 4 / 3), description="random_resized: range [min, max] of the box's aspect ratio, each in (0, 100]"
    )
    flip: bool = Field(True, description="random horizontal flip")
    in_memory: bool | Literal["auto"] = Field(
        "auto",
        description="decode everything into RAM (true), stream from a packed store (false), or auto: RAM when the "
        "images share one size and fit data.memory_budget_gb",
    )
    memory_budget_gb: float = Field(
        4.0, gt=0, le=65_536, description="auto: largest decoded dataset held in RAM, in GiB"
    )
    workers: int | None = Field(
        None,
        ge=0,
        le=MAX_WORKERS,
        description="streaming: DataLoader worker processes that read and decode (default: CPUs, at most 8)",
    )
    decode: Literal["cpu", "gpu"] = Field(
        "cpu",
        description="streaming JPEG stores: decode in CPU workers, or batched on the GPU (nvJPEG; needs a CUDA device)",
    )
    batch_reads: Literal["auto", "uring", "pread"] = Field(
        "auto",
        description="raw stores: read a batch in one Linux io_uring call (uring; auto: where available) or one "
        "pread an image (pread)",
    )
    mean: tuple[Unit, ...] | None = Field(
        None, min_length=1, max_length=16, description="per-channel mean in [0,1] (default: the dataset's)"
    )
    std: tuple[Spread, ...] | None = Field(
        None, min_length=1, max_length=16, description="per-channel std in (0,1] (default: the dataset's)"
    )

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _min_before_max(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _ordered(value)


class OptimConfig(_Section):
    name: Literal["sgd", "adamw", "lars"] = Field(
        "sgd", description="sgd, adamw, or lars (momentum SGD with layer-wise trust ratios, You et al. 2017)"
    )
    lr: float = Field(0.1, gt=0, le=1000, description="learning rate at the start (the schedule lowers it)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD and LARS momentum")
    nesterov: bool = Field(True, description="SGD and LARS: Nesterov momentum")
    weight_decay: float = Field(5e-4, ge=0, le=10, description="L2 penalty (adamw: decoupled weight decay)")
    exclude_norm_bias: bool = Field(
        False, description="no weight decay (and no LARS scaling) on biases and normalisation weights"
    )
    lr_multipliers: dict[str, Annotated[float, Field(gt=0, le=1000)]] = Field(
        default_factory=dict,
        description='learning-rate multiplier per module path, e.g. {"task.predictor": 10} (longest prefix wins)',
    )
    lars_eta: float = Field(0.001, gt=0, le=1, description="lars: trust coefficient eta")


class KnnMonitorConfig(_Section):
    data: str | None = Field(
        None, description="labelled data (dataset name, folder of class sub-folders or store) for the online kNN"
    )
    every: int = Field(1, ge=1, le=MAX_EPOCHS, description="measure after every N epochs (and after the last)")
    stage: str | None = Field(None, description="backbone stage to embed (default: the last)")
    pool: Literal["avg", "flatten"] = Field("avg", description="global average pool, or flatten the stage's map")
    k: int = Field(20, ge=1, le=10000, description="neighbours that vote")
    temperature: float = Field(0.07, gt=0, le=100, description="vote weight exp(similarity / temperature)")
    bank: int = Field(10000, ge=1, le=10_000_000, description="labelled images kept as neighbours (seeded subset)")
    queries: int = Field(2000, ge=1, le=10_000_000, description="test images voted on (seeded subset)")
    test_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="the test split carved when the data has none (the probes' fraction and seed)"
    )
    batch_size: int = Field(256, ge=1, le=65536, description="images per forward pass")


class MonitorConfig(_Section):
    knn: KnnMonitorConfig = KnnMonitorConfig()


class ScheduleConfig(_Section):
    kind: Literal["step", "cosine", "linear"] = Field(
        "step", description="step: x gamma after each milestone; cosine / linear: per step down to 0 at the end"
    )
    milestones: tuple[Epoch, ...] = Field(
        (30, 60, 80), max_length=1000, description="step: epochs after which lr *= gamma"
    )
    gamma: float = Field(0.2, gt=0, le=10, description="step: learning-rate factor at each milestone")
    warmup_epochs: float = Field(
        0.0, ge=0, le=MAX_EPOCHS, description="linear ramp of the learning rate from ~0 over these epochs"
    )


class CheckpointConfig(_Section):
    every_steps: int | None = Field(None, ge=1, le=2**40, description="also checkpoint every N steps within an epoch")
    every_minutes: float | None = Field(
        None, gt=0, le=MAX_MINUTES, description="also checkpoint every N minutes within an epoch"
    )


class RunConfig(_Section):
    """Everything that defines a pretraining run; stored in every checkpoint."""

    task: dict[str, Any] = Field(description="the pretext task: name plus its own options (tables below)")
    backbone: dict[str, Any] = Field(description="the encoder: name plus its own options (tables below)")
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    monitor: MonitorConfig = MonitorConfig()
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS, description="passes over the training data")
    seed: int = Field(
        0, ge=0, lt=MAX_SEED, description="seeds weights, augmentation, pretext draws and splits (0 <= seed < 2**63)"
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "fp32",
        description="bf16 or fp16 autocast (fp16 with a gradient scaler, CUDA only); auto: bf16 where the GPU "
        "or CPU computes it natively, else fp32 (the run records what it chose)",
    )
    channels_last: bool | None = Field(
        None, description="default: on (except on MPS); measured 1.7x faster for NIN on CPU"
    )
    compile: bool = Field(False, description="torch.compile the model (faster steps after a slow first one)")
    sync_batchnorm: bool = Field(True, description="with several processes, BatchNorm statistics over the global batch")
    dist_timeout_minutes: float = Field(
        30.0,
        gt=0,
        le=MAX_MINUTES,
        description="several processes: how long a rank waits for the others (rank 0 evaluates and saves)",
    )
    preset: str | None = Field(
        None, description="the task's preset these values started from (default: the task's default)"
    )

    @field_validator("task", "backbone")
    @classmethod
    def _has_name(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise ValueError("needs a 'name'")
        return value


def parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, true/false, null, [lists]), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def nested(dotted: Mapping[str, Any], what: str = "key") -> dict[str, Any]:
    """Dotted keys as nested sections, merged: ``{"backbone.width": 0.25, "optim": {"lr": 0.05}}``
    -> ``{"backbone": {"width": 0.25}, "optim": {"lr": 0.05}}``. The one place that turns
    ``--set`` keys, CLI flags and the API's keyword overrides into a config layer."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"{what} '{key}': empty part in the dotted name; write e.g. backbone.width")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{what} '{key}': '{part}' is set both as a value and a section")
        last = parts[-1]
        if isinstance(value, Mapping):  # a section's keys as given: a dict's own keys may hold dots
            if last in node and not isinstance(node[last], dict):
                raise ConfigError(f"{what} '{key}': '{last}' is set both as a value and a section")
            node[last] = deep_merge(node.get(last, {}), dict(value))
        elif isinstance(node.get(last), dict):
            raise ConfigError(f"{what} '{key}': '{last}' is set both as a value and a section")
        else:
            node[last] = value
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'}."""
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}': expected KEY=VALUE, e.g. --set backbone.width=0.5")
        pairs[key.strip()] = parse_value(value.strip())
    return nested(pairs, "--set")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML file of config keys (the same keys as --set, as nested tables)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--config '{path}': is a folder; give a .json or .toml file")
    if not path.is_file():
        raise ConfigError(f"--config '{path}': no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--config '{path}': not UTF-8 text (byte {exc.start}); save it as UTF-8 .json or .toml"
        ) from None
    except OSError as exc:
        raise ConfigError(f"--config '{path}': cannot read it ({exc.strerror}); check its permissions") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"--config '{path}': use a .json or .toml file")
    except (json.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"--config '{path}': cannot parse: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config '{path}': expected a table of keys at the top level")
    return data


def _model_at(model: Any, parts: list[str]) -> Any:
    """The pydantic model a location inside ``model`` points into (``views.0`` -> View), or None."""
    import typing

    node = model
    for part in parts:
        fields = getattr(node, "model_fields", None)
        if fields is not None and part in fields:
            node = fields[part].annotation
        elif part.isdigit():  # an item of a list or tuple of models
            pass
        else:
            return None
        while node is not None and not hasattr(node, "model_fields") and typing.get_args(node):
            inner = [a for a in typing.get_args(node) if hasattr(a, "model_fields")]
            node = inner[0] if inner else None
    return node


def _describe(exc: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    """First pydantic error as one line: 'backbone.widht: unknown key (did you mean ...)'."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    key = f"{prefix}{loc}" if loc else prefix.rstrip(".")
    if err["type"] == "extra_forbidden":
        node = _model_at(model, [str(p) for p in err["loc"][:-1]])
        known = list(getattr(node, "model_fields", {}))
        last = loc.split(".")[-1]
        hint = suggest(last, known)
        return f"unknown config key '{key}'{hint}; valid keys here: {', '.join(known)}"
    got = err.get("input")
    return f"config '{key}': {err['msg']} (got {got!r})"


_Model = TypeVar("_Model", bound=BaseModel)


def validate_section(model: type[_Model], values: Mapping[str, Any], prefix: str) -> _Model:
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix, model)) from None


def preset_overrides(task_cls: Any, task_name: str, preset: str) -> Mapping[str, Any]:
    """The run-config overrides of a task's preset, or a one-line error naming the presets."""
    if preset not in task_cls.presets:
        known = sorted(task_cls.presets)
        raise ConfigError(
            f"unknown preset '{preset}'{suggest(preset, known)} for task '{task_name}'; "
            f"presets: {', '.join(known) or 'none'}"
        )
    return task_cls.presets[preset]


def build_config(raw: Mapping[str, Any], plugins: Plugins) -> RunConfig:
    """Validate a merged raw config, including the task's and backbone's own options.

    Returns a config whose task/backbone sections hold every option with its default filled
    in, so a checkpoint describes the run completely.
    """
    cfg = validate_section(RunConfig, raw, "")
    assert isinstance(cfg, RunConfig)
    sections: dict[str, dict[str, Any]] = {}
    for section, registry in (("task", plugins.tasks), ("backbone", plugins.backbones)):
        values = dict(getattr(cfg, section))
        name = values.pop("name")
        cls = registry.get(name)
        options = validate_section(cls.Config, values, f"{section}.")
        sections[section] = {"name": name, **options.model_dump(mode="json")}
    if cfg.preset is not None:
        preset_overrides(plugins.tasks.get(cfg.task["name"]), cfg.task["name"], cfg.preset)
    return cfg.model_copy(update=sections)


def _leaves(layer: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if isinstance(value, Mapping):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _check_agree(flag_layer: Mapping[str, Any], set_layer: Mapping[str, Any]) -> None:
    """A flag (``--epochs 1``) and a ``--set`` of the same key (``epochs=0``) that disagree are a
    one-line error, not a silent choice of one."""
    sets = _leaves(set_layer)
    for key, value in _leaves(flag_layer).items():
        if key in sets and sets[key] != value:
            raise ConfigError(
                f"the option for '{key}' ({value!r}) and --set {key}={sets[key]!r} disagree; give only one of them"
            )


def assemble(
    task: str,
    plugins: Plugins,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build a RunConfig from the CLI's layers (see the module docstring for the order)."""
    file_layer = read_config_file(config_file) if config_file else {}
    set_layer = parse_sets(sets or [])
    flag_layer = dict(flags or {})
    _check_agree(flag_layer, set_layer)
    task_name = task
    task_cls = plugins.tasks.get(task_name)
    # The preset is chosen first (it is the bottom layer of values), by the same precedence.
    for layer in (flag_layer, set_layer, file_layer):
        preset = preset or layer.get("preset")
    preset = preset or task_cls.default_preset
    preset_layer: dict[str, Any] = {}
    if preset is not None:
        preset_layer = dict(preset_overrides(task_cls, task_name, preset))
    raw: dict[str, Any] = {"task": {"name": task_name}, "backbone": {"name": "nin"}}
    for layer in (preset_layer, file_layer, set_layer, flag_layer):
        raw = deep_merge(raw, layer)
    raw["preset"] = preset
    if raw["task"].get("name") != task_name:
        raise ConfigError(
            f"the config names task '{raw['task'].get('name')}' but the command trains "
            f"'{task_name}': remove task.name from the config or train that task"
        )
    return build_config(raw, plugins)


def model_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of a config model, sections flattened (``data.batch_size``)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys += model_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def config_keys(plugins: Plugins) -> list[str]:
    """Every key ``--set`` takes: the run's, then each registered task's and backbone's own
    (``task.angles``, ``backbone.width``), sorted and without repeats (for shell completion)."""
    keys = set(model_keys(RunConfig)) - {"task", "backbone"}  # tables: their keys follow
    for section, registry in (("task", plugins.tasks), ("backbone", plugins.backbones)):
        for name in registry.names():
            cls = registry.get(name)
            keys |= set(model_keys(cls.Config, f"{section}.")) if hasattr(cls, "Config") else set()
    return sorted(keys)
