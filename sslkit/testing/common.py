"""What every check shares: the report, the error, synthetic images, fp32 without TF32, seeded
builds, comparisons, the state_dict round trip and the fixed-batch fit."""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..config import validate_section
from ..interfaces import Backbone, Config, PretextTask, Probe
from ..plugins import Plugins, load_plugins

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
    if isinstance(inputs, Mapping):
        return {k: _to_channels_last(v) for k, v in inputs.items()}
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
