"""Conformance checks for plugin authors: does a task, backbone or probe keep sslkit's contracts?

A plugin's whole test file can be::

    from sslkit.testing import check_task

    def test_conformance(sslkit_plugins):          # fixture from sslkit's pytest plugin
        check_task("mytask", plugins=sslkit_plugins)

Each ``check_*`` builds the thing from its registered name (or from the class itself), runs it on
a tiny synthetic batch and raises :class:`ConformanceError` (an ``AssertionError``, so pytest
shows it as a failure) naming the broken contract. What is checked:

- types: the class subclasses the right :mod:`sslkit` interface and its ``Config`` forbids
  unknown keys; presets (tasks) are valid run-config overrides;
- shapes: stages have the declared channels and stride (backbones), logits are ``[M, K]`` with
  targets ``[M]`` int64 in ``[0, K)`` (tasks), ``[B, classes]`` (probes);
- learning: the loss is finite and decreases over a few optimiser steps on a fixed tiny batch;
- determinism: the same seed gives the same weights, pretext draws and outputs;
- device and ``channels_last``: outputs stay on the input's device, channels_last gives the
  same numbers;
- checkpoint round trip: ``state_dict`` -> ``torch.save`` -> ``torch.load(weights_only=True)``
  -> a fresh instance gives identical outputs;
- ONNX (backbones, optional): ``torch.onnx.export`` to a temporary file, run with
  onnxruntime, outputs match.

The checks only use the public interfaces, so a plugin that passes them trains with
``sslkit train``, probes and exports like the built-ins.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn

from .config import RunConfig, deep_merge, validate_section
from .interfaces import Backbone, Config, PretextTask, Probe, ProbeConfig
from .plugins import Plugins, load_plugins

__all__ = [
    "ConformanceError",
    "Report",
    "SMALL_NIN",
    "check_backbone",
    "check_probe",
    "check_task",
    "synthetic_images",
]

# A backbone small enough for checks to take a second on a CPU.
SMALL_NIN: Mapping[str, Any] = {"blocks": 3, "width": 0.1}


class ConformanceError(AssertionError):
    """A plugin broke one of sslkit's contracts; the message names the plugin and the contract."""


@dataclass
class Report:
    """What a check ran: the contracts that held, and the loss per optimiser step."""

    kind: str
    name: str
    checks: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def ok(self, check: str) -> None:
        self.checks.append(check)


def synthetic_images(
    batch: int, channels: int = 3, size: int = 32, seed: int = 0, device: str | torch.device = "cpu"
) -> Tensor:
    """Normalised-looking images [B, C, S, S] with structure (smooth blobs and edges, not white
    noise), so spatial pretext tasks have something to learn; seeded."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, channels, 4, 4, generator=g)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    ramp = torch.linspace(-1, 1, size).view(1, 1, 1, size) * torch.randn(batch, 1, 1, 1, generator=g)
    fine = 0.1 * torch.randn(batch, channels, size, size, generator=g)
    return (smooth + ramp + fine).to(device)


# --------------------------------------------------------------------------- helpers


def _fail(report: Report, message: str) -> ConformanceError:
    return ConformanceError(f"{report.kind} '{report.name}': {message}")


_Kind = TypeVar("_Kind", Backbone, PretextTask, Probe)
_Options = TypeVar("_Options", bound=Config)


def _resolve(
    kind: str, registry_attr: str, base: type[_Kind], spec: Any, plugins: Plugins | None
) -> tuple[str, type[_Kind]]:
    """(display name, class) from a registered name or a class."""
    if isinstance(spec, str):
        plugins = plugins if plugins is not None else load_plugins()
        cls = getattr(plugins, registry_attr).get(spec)  # UnknownNameError names the failed plugins
        name = spec
    else:
        cls, name = spec, getattr(spec, "__name__", repr(spec))
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConformanceError(f"{kind} '{name}': {cls!r} is not a subclass of sslkit.{base.__name__}")
    config_cls = getattr(cls, "Config", None)
    if not (isinstance(config_cls, type) and issubclass(config_cls, Config)):
        raise ConformanceError(f"{kind} '{name}': its Config must subclass sslkit.Config (unknown keys are errors)")
    if config_cls.model_config.get("extra") != "forbid":
        raise ConformanceError(f"{kind} '{name}': its Config must keep extra='forbid' so typos in --set are caught")
    return name, cls


def _config(config_cls: type[_Options], options: Mapping[str, Any] | None, prefix: str) -> _Options:
    # A bad option is the caller's mistake, not the plugin's: a one-line sslkit ConfigError.
    return validate_section(config_cls, dict(options or {}), prefix)


def _fp32_precision_flags() -> list[tuple[Any, str]]:
    """(object, attribute) of the TF32 switches for matmuls and convolutions in this torch.

    torch >= 2.9 has ``fp32_precision`` ("ieee" | "tf32" | "none": inherit); once anyone sets
    it, reading or writing the legacy ``allow_tf32`` flags raises ("mix of the legacy and new
    APIs"), so the new API is used whenever it exists, the legacy flags only on older torch.
    """
    matmul = torch.backends.cuda.matmul
    cudnn = [getattr(torch.backends.cudnn, part, None) for part in ("conv", "rnn")]
    if hasattr(matmul, "fp32_precision") and all(hasattr(c, "fp32_precision") for c in cudnn):
        # conv and rnn together: cuDNN's legacy flag is readable only while the two agree
        return [(matmul, "fp32_precision"), *((c, "fp32_precision") for c in cudnn)]
    return [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")]


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """float32 convolutions and matmuls without TF32 inside the block; the settings are restored after.

    The checks compare channels_last with contiguous outputs at 1e-4. On CUDA (Ampere and
    later) cuDNN convolutions use TF32 by default (10-bit mantissa, ~1e-3 relative error), and
    the two memory formats run different kernels, so they would differ by more than 1e-4 on a
    correct plugin. TF32 is turned off during the checks rather than the tolerance loosened on
    CUDA, so the comparison keeps the same power on every device.
    """
    flags = _fp32_precision_flags()
    saved = [getattr(owner, name) for owner, name in flags]
    for owner, name in flags:
        setattr(owner, name, "ieee" if name == "fp32_precision" else False)
    try:
        yield
    finally:
        for (owner, name), value in zip(flags, saved, strict=True):
            setattr(owner, name, value)


_F = TypeVar("_F", bound=Callable[..., Any])


def _in_full_fp32(check: _F) -> _F:
    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> Any:
        with full_fp32():
            return check(*args, **kwargs)

    return run  # type: ignore[return-value]


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _to_channels_last(inputs: Any) -> Any:
    if isinstance(inputs, Tensor):
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to_channels_last(x) for x in inputs)
    return inputs


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _same(a: Any, b: Any, atol: float = 0.0) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if atol == 0.0 and not torch.equal(x, y):
            return False
        if atol > 0.0 and not torch.allclose(x.float(), y.float(), atol=atol, rtol=atol):
            return False
    return True


def _round_trip(module: nn.Module, fresh: nn.Module) -> None:
    """Save ``module``'s weights the way checkpoints do and load them into ``fresh``."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))


def _fit(
    report: Report, params: Sequence[nn.Parameter], step_loss: Callable[[], Tensor], steps: int, lr: float
) -> None:
    """Adam on a fixed batch: the loss must be finite and end lower than it started."""
    if not params:
        raise _fail(report, "has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = step_loss()
        if loss.ndim != 0:
            raise _fail(report, f"loss must be a scalar, got shape {tuple(loss.shape)}")
        if not torch.isfinite(loss):
            raise _fail(report, f"loss is not finite ({loss.item()}) at step {len(report.losses) + 1}")
        report.losses.append(float(loss.item()))
        if not loss.requires_grad:
            raise _fail(report, "the loss does not depend on any trainable parameter (detached logits?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    first, last = report.losses[0], min(report.losses[-2:])
    if not last < first:
        curve = ", ".join(f"{v:.4g}" for v in report.losses)
        raise _fail(report, f"loss did not decrease over {steps} Adam steps (lr {lr}) on a fixed batch: {curve}")
    report.ok("loss finite and decreasing")


# --------------------------------------------------------------------------- backbones


@_in_full_fp32
def check_backbone(
    backbone: str | type[Backbone],
    *,
    options: Mapping[str, Any] | None = None,
    plugins: Plugins | None = None,
    image_size: int = 32,
    channels: int = 3,
    batch: int = 2,
    device: str | torch.device | None = None,
    onnx: bool = True,
    seed: int = 0,
) -> Report:
    """Check a backbone's contracts (see the module docstring); returns what ran."""
    name, cls = _resolve("backbone", "backbones", Backbone, backbone, plugins)
    report = Report("backbone", name)
    dev = _device(device)
    config = _config(cls.Config, options, "backbone.")

    def build(s: int) -> Backbone:
        torch.manual_seed(s)
        return cls(config).to(dev)

    model = build(seed)
    stages = list(model.stages)
    if not stages:
        raise _fail(report, "declares no stages (set self.stages to Stage(name, channels, stride) tuples)")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise _fail(report, f"stage names are not unique: {names}")
    for s in stages:
        if s.channels < 1 or s.stride < 1:
            raise _fail(report, f"stage '{s.name}' has channels {s.channels}, stride {s.stride}; both must be >= 1")
    report.ok("stages declared")

    x = synthetic_images(batch, channels, image_size, seed, dev)
    model.eval()
    with torch.no_grad():
        out = model(x, names)
        last = model(x)
    if not isinstance(out, dict) or set(out) != set(names):
        raise _fail(
            report,
            f"forward(x, {names}) must return a dict with exactly those stages, got "
            f"{list(out) if isinstance(out, dict) else type(out).__name__}",
        )
    if set(last) != {names[-1]}:
        raise _fail(report, f"forward(x) must return only the last stage '{names[-1]}', got {list(last)}")
    for s in stages:
        y = out[s.name]
        expected = {image_size // s.stride, -(-image_size // s.stride)}
        if (
            y.dim() != 4
            or y.shape[0] != batch
            or y.shape[1] != s.channels
            or y.shape[2] not in expected
            or y.shape[3] not in expected
        ):
            raise _fail(
                report,
                f"stage '{s.name}' should be [{batch}, {s.channels}, {image_size // s.stride}, "
                f"{image_size // s.stride}] for {image_size}px input (stride {s.stride}), got {list(y.shape)}",
            )
        if y.device.type != dev.type:
            raise _fail(report, f"stage '{s.name}' came back on {y.device}, the input was on {dev}")
        if not torch.isfinite(y).all():
            raise _fail(report, f"stage '{s.name}' has non-finite values")
    report.ok("stage shapes, device")

    with torch.no_grad():
        again = build(seed).eval()(x, names)
    if not _same(out, again):
        raise _fail(
            report,
            f"two builds under torch.manual_seed({seed}) give different outputs (initialise only from torch's "
            "global RNG)",
        )
    report.ok("deterministic under a seed")

    with torch.no_grad():
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)(_to_channels_last(x), names)
    if not _same(out, cl, atol=1e-4):
        raise _fail(report, "channels_last inputs and weights give different outputs")
    report.ok("channels_last")

    fresh = build(seed + 1).eval()
    _round_trip(model, fresh)
    with torch.no_grad():
        restored = fresh(x, names)
    if not _same(out, restored):
        raise _fail(
            report,
            "a fresh instance loaded from state_dict gives different outputs"
            " (is some state not a parameter or buffer?)",
        )
    report.ok("checkpoint round trip")

    model.train()
    model.zero_grad(set_to_none=True)
    features = model(x, names)
    sum(f.float().pow(2).mean() for f in features.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if unused:
        raise _fail(
            report,
            "parameters get no gradient when every stage is asked for (DistributedDataParallel fails on "
            f"them): {', '.join(unused[:5])}",
        )
    report.ok("every parameter trains")

    head = nn.Linear(stages[-1].channels, 4).to(dev)
    targets = torch.arange(batch, device=dev) % 4
    _fit(
        report,
        [*model.parameters(), *head.parameters()],
        lambda: nn.functional.cross_entropy(head(model(x)[names[-1]].float().mean(dim=(2, 3))), targets),
        steps=6,
        lr=1e-3,
    )
    if onnx:
        _check_onnx(report, model.eval(), x, names)
    return report


class _StageOutputs(nn.Module):
    """A backbone as ONNX sees it: images -> a tuple of stage feature maps."""

    def __init__(self, backbone: Backbone, names: Sequence[str]) -> None:
        super().__init__()
        self.backbone = backbone
        self.names = list(names)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.backbone(images, self.names)
        return tuple(out[n] for n in self.names)


def _check_onnx(report: Report, model: Backbone, x: Tensor, names: Sequence[str]) -> None:
    try:
        import onnxruntime as ort
    except ImportError:  # an optional extra for plugin authors: skip rather than fail
        report.ok("onnx skipped (onnxruntime not installed)")
        return
    wrapper = _StageOutputs(copy.deepcopy(model).cpu().eval(), names)
    x = x.cpu()
    with torch.no_grad():
        expected = wrapper(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backbone.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter deprecation chatter is not the plugin's fault
            try:
                # The TorchScript exporter is ~5x faster than the dynamo one for these checks.
                torch.onnx.export(
                    wrapper,
                    (x,),
                    str(path),
                    input_names=["images"],
                    output_names=list(names),
                    dynamic_axes={"images": {0: "batch"}},
                    dynamo=False,
                )
            except Exception as first:
                try:
                    torch.onnx.export(
                        wrapper, (x,), str(path), input_names=["images"], output_names=list(names), dynamo=True
                    )
                except Exception as exc:
                    raise _fail(
                        report,
                        f"cannot be exported to ONNX: {type(first).__name__}: {first}; dynamo exporter: "
                        f"{type(exc).__name__}: {exc}".replace("\n", " "),
                    ) from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    for n, want, have in zip(names, expected, got, strict=True):
        have_t = torch.from_numpy(have)
        if have_t.shape != want.shape or not torch.allclose(have_t, want, atol=1e-4, rtol=1e-3):
            diff = (have_t - want).abs().max().item() if have_t.shape == want.shape else float("nan")
            raise _fail(
                report,
                f"ONNX output of stage '{n}' differs from PyTorch (max abs diff {diff:.3g}, shapes "
                f"{list(have_t.shape)} vs {list(want.shape)})",
            )
    report.ok("onnx export matches")


# --------------------------------------------------------------------------- tasks


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
    dev = _device(device)
    config = _config(cls.Config, options, "task.")
    make_backbone = _build_backbone(backbone, backbone_options, plugins)

    for preset, overrides in dict(cls.presets).items():
        raw = deep_merge({"task": {"name": name}, "backbone": {"name": "nin"}}, overrides)
        try:
            validate_section(RunConfig, raw, "")
        except Exception as exc:
            raise _fail(report, f"preset '{preset}' is not a valid run-config override: {exc}") from None
    if cls.default_preset is not None and cls.default_preset not in cls.presets:
        raise _fail(report, f"default_preset '{cls.default_preset}' is not one of its presets {sorted(cls.presets)}")
    report.ok("config and presets")

    def build(s: int) -> tuple[Backbone, PretextTask]:
        torch.manual_seed(s)
        b = make_backbone().to(dev)
        return b, cls(config, b).to(dev)

    def draw(t: PretextTask, images: Tensor, s: int) -> tuple[Any, Tensor]:
        return t.prepare(images, torch.Generator(device=dev).manual_seed(s))

    images = synthetic_images(batch, channels, image_size, seed, dev)
    bb, model = build(seed)
    inputs, targets = draw(model, images, seed)
    if not isinstance(targets, Tensor) or targets.dtype != torch.int64 or targets.dim() != 1:
        raise _fail(
            report,
            "prepare() must return targets as a 1-D int64 tensor, got "
            f"{getattr(targets, 'dtype', type(targets).__name__)} {list(getattr(targets, 'shape', []))}",
        )
    for t in [*_tensors(inputs), targets]:
        if t.device.type != dev.type:
            raise _fail(
                report,
                f"prepare() returned a tensor on {t.device} for images on {dev} (generate on the images' device)",
            )
    again_inputs, again_targets = draw(model, images, seed)
    if not (_same(inputs, again_inputs) and torch.equal(targets, again_targets)):
        raise _fail(
            report, "prepare() gives different results for the same seeded generator (draw randomness only from it)"
        )
    report.ok("prepare: targets, device, determinism")

    model.eval(), bb.eval()
    with torch.no_grad():
        logits = model(bb, inputs)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise _fail(
            report,
            f"forward() must return logits [M, K] with M = {targets.shape[0]} targets, got "
            f"{list(getattr(logits, 'shape', []))}",
        )
    k = logits.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= k):
        raise _fail(
            report, f"targets must lie in [0, {k}) for {k} logits, got [{int(targets.min())}, {int(targets.max())}]"
        )
    if not torch.isfinite(logits).all():
        raise _fail(report, "logits are not finite")
    correct = model.correct(logits, targets)
    if not isinstance(correct, Tensor) or correct.ndim != 0 or not 0 <= float(correct) <= targets.shape[0]:
        raise _fail(report, f"correct() must return a 0-dim count in [0, {targets.shape[0]}], got {correct!r}")
    report.ok("logits and labels in range")

    bb2, model2 = build(seed)
    model2.eval(), bb2.eval()
    with torch.no_grad():
        if not _same(logits, model2(bb2, draw(model2, images, seed)[0])):
            raise _fail(report, f"two builds under torch.manual_seed({seed}) give different logits")
        cl_bb, cl_task = (
            copy.deepcopy(bb).to(memory_format=torch.channels_last),
            copy.deepcopy(model).to(memory_format=torch.channels_last),
        )
        if not _same(logits, cl_task(cl_bb, _to_channels_last(inputs)), atol=1e-4):
            raise _fail(report, "channels_last inputs and weights give different logits")
    report.ok("deterministic under a seed, channels_last")

    fresh_bb, fresh_task = build(seed + 1)
    _round_trip(bb, fresh_bb)
    _round_trip(model, fresh_task)
    fresh_bb.eval(), fresh_task.eval()
    with torch.no_grad():
        if not _same(logits, fresh_task(fresh_bb, inputs)):
            raise _fail(
                report,
                "a fresh task loaded from state_dict gives different logits (keep all state in parameters or buffers)",
            )
    report.ok("checkpoint round trip")

    bb.train(), model.train()
    params = [p for p in [*bb.parameters(), *model.parameters()] if p.requires_grad]
    # The same pretext draw every step: a fixed batch the model can fit.
    _fit(report, params, lambda: model.loss(model(bb, inputs), targets), steps=steps, lr=lr)
    return report


# --------------------------------------------------------------------------- probes


@_in_full_fp32
def check_probe(
    probe: str | type[Probe],
    *,
    options: Mapping[str, Any] | None = None,
    feature_shape: tuple[int, ...] = (16, 4, 4),
    num_classes: int = 5,
    plugins: Plugins | None = None,
    batch: int = 8,
    steps: int = 8,
    lr: float = 1e-2,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Report:
    """Check a probe's contracts on features of ``feature_shape`` (C, H, W)."""
    name, cls = _resolve("probe", "probes", Probe, probe, plugins)
    report = Report("probe", name)
    if not issubclass(cls.Config, ProbeConfig):
        raise _fail(report, "its Config must subclass sslkit.ProbeConfig (the training recipe every probe has)")
    dev = _device(device)
    config = _config(cls.Config, options, "probe.")

    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, *feature_shape, generator=g).to(dev)
    labels = (torch.arange(batch) % num_classes).to(dev)
    # Non-parametric probes (kNN) expose fit(features, labels) and are fitted before use.
    fits = callable(getattr(cls, "fit", None))

    def build(s: int) -> Probe:
        torch.manual_seed(s)
        probe = cls(config, tuple(feature_shape), num_classes).to(dev)
        if fits:  # Probe does not declare fit() (only non-parametric probes have it), hence the cast
            cast(Any, probe).fit(features, labels)
        return probe

    model = build(seed).eval()
    with torch.no_grad():
        logits = model(features)
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (batch, num_classes):
        raise _fail(
            report, f"forward() must return logits [{batch}, {num_classes}], got {list(getattr(logits, 'shape', []))}"
        )
    if logits.device.type != dev.type or not torch.isfinite(logits).all():
        raise _fail(report, f"logits must be finite and on {dev}")
    report.ok("logit shape, device")
    with torch.no_grad():
        if not _same(logits, build(seed).eval()(features)):
            raise _fail(report, f"two builds under torch.manual_seed({seed}) give different logits")
        if len(feature_shape) == 3 and not _same(
            logits, copy.deepcopy(model).to(memory_format=torch.channels_last)(_to_channels_last(features)), atol=1e-4
        ):
            raise _fail(report, "channels_last features give different logits")
    report.ok("deterministic under a seed, channels_last")
    torch.manual_seed(seed + 1)
    fresh = cls(config, tuple(feature_shape), num_classes).to(dev).eval()  # not fitted: all state from the file
    try:
        _round_trip(model, fresh)
        with torch.no_grad():
            restored = fresh(features)
    except Exception as exc:
        raise _fail(
            report, f"a fresh probe cannot load its state_dict: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from None
    if not _same(logits, restored):
        raise _fail(report, "a fresh probe loaded from state_dict gives different logits")
    report.ok("checkpoint round trip")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if fits and not trainable:
        accuracy = float((logits.argmax(1) == labels).float().mean())
        if not accuracy > 1.0 / num_classes:
            raise _fail(report, f"fitted on a batch, it predicts that batch's labels at chance ({accuracy:.2f})")
        report.ok("fit: predicts its own training labels")
        return report
    model.train()
    _fit(
        report,
        [p for p in model.parameters() if p.requires_grad],
        lambda: nn.functional.cross_entropy(model(features), labels),
        steps=steps,
        lr=lr,
    )
    return report
