"""``check_backbone``: stages, shapes, determinism, channels_last, round trip, gradients, learning, ONNX."""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..interfaces import Backbone
from ..plugins import Plugins
from .common import (
    Report,
    _config,
    _device,
    _fail,
    _fit,
    _in_full_fp32,
    _resolve,
    _round_trip,
    _same,
    _to_channels_last,
    synthetic_images,
)


def _check_stages(report: Report, model: Backbone) -> list[str]:
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
    return names


def _check_stage_outputs(
    report: Report, model: Backbone, x: Tensor, names: list[str], dev: torch.device
) -> dict[str, Tensor]:
    batch, image_size = x.shape[0], x.shape[-1]
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
    for s in model.stages:
        y = out[s.name]
        expected = {image_size // s.stride, -(-image_size // s.stride)}
        shape_ok = y.dim() == 4 and y.shape[0] == batch and y.shape[1] == s.channels
        if not shape_ok or y.shape[2] not in expected or y.shape[3] not in expected:
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
    return out


def _check_backbone_repeats(
    report: Report, model: Backbone, build: Any, x: Tensor, names: list[str], out: dict[str, Tensor], seed: int
) -> None:
    """The same seed builds the same backbone; channels_last and a state_dict round trip agree."""
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
            "a fresh instance loaded from state_dict gives different outputs "
            "(is some state not a parameter or buffer?)",
        )
    report.ok("checkpoint round trip")


def _check_backbone_trains(report: Report, model: Backbone, x: Tensor, names: list[str], dev: torch.device) -> None:
    """Every parameter gets a gradient when every stage is asked for, and a head on it can learn."""
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
    head = nn.Linear(model.stages[-1].channels, 4).to(dev)
    targets = torch.arange(x.shape[0], device=dev) % 4
    _fit(
        report,
        [*model.parameters(), *head.parameters()],
        lambda: nn.functional.cross_entropy(head(model(x)[names[-1]].float().mean(dim=(2, 3))), targets),
        steps=6,
        lr=1e-3,
    )


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
    names = _check_stages(report, model)
    x = synthetic_images(batch, channels, image_size, seed, dev)
    out = _check_stage_outputs(report, model, x, names, dev)
    _check_backbone_repeats(report, model, build, x, names, out, seed)
    _check_backbone_trains(report, model, x, names, dev)
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
