"""``check_probe``: logits, determinism, channels_last, round trip, learning (or fitting)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..interfaces import Probe, ProbeConfig
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
)


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
    # Non-parametric probes (kNN: trains = False) are fitted with fit(features, labels) before use.
    fits = not cls.trains

    def build(s: int) -> Probe:
        torch.manual_seed(s)
        probe = cls(config, tuple(feature_shape), num_classes).to(dev)
        if fits:
            probe.fit(features, labels)
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
