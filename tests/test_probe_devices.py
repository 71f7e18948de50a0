"""The probe engine keeps predictions and labels on one device and reads nothing back per step.

Both bugs are invisible on a CPU-only run (one device, syncs are free): predictions on the CPU
compared with labels on the GPU crashed every probe with a validation split on CUDA, and a
``float()`` per step made the GPU wait for the host. The ``meta`` device stands in for "a device
other than the probe's" here; tests/test_cuda.py runs the same on a real GPU.
"""

from __future__ import annotations

import pytest
import torch

from sslkit.config import validate_section
from sslkit.probes import training as engine
from sslkit.probes.features import CachedFeatures
from sslkit.probes.settings import ProbeSettings


def _probe(plugins, epochs: int = 1, batch_size: int = 8):
    cls = plugins.probes.get("linear")
    cfg = validate_section(cls.Config, {"epochs": epochs, "batch_size": batch_size, "milestones": [5]}, "probe.")
    torch.manual_seed(0)
    return cls(cfg, (4, 2, 2), 3)


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return CachedFeatures(torch.randn(n, 4, 2, 2, generator=g)), torch.randint(0, 3, (n,), generator=g)


def test_predict_returns_on_the_labels_device(plugins):
    probe = _probe(plugins)
    source, _ = _data(10, 1)
    pred = engine.predict(probe, source, batch_size=4, device=torch.device("meta"))
    assert pred.device.type == "meta" and pred.shape == (10,)
    assert engine.predict(probe, source, batch_size=4).device.type == "cpu"


def test_accuracy_refuses_two_devices():
    a = torch.tensor([0, 1, 2])
    assert engine.accuracy(a, torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one device"):
        engine.accuracy(a, a.to("meta"))


def test_validation_compares_on_the_labels_device(plugins, monkeypatch):
    """Validation labels on another device than the probe (as on CUDA): predictions follow them."""
    seen: list[tuple[str, str]] = []

    def accuracy(pred, labels):
        seen.append((pred.device.type, labels.device.type))
        return 0.5

    monkeypatch.setattr(engine, "accuracy", accuracy)
    probe = _probe(plugins, epochs=2)
    train, labels = _data(32, 2)
    val_src, val_labels = _data(12, 3)
    settings = ProbeSettings(probe="linear", device="cpu")
    history, _ = engine.train_probe(
        probe, train, labels, settings, torch.device("cpu"), val=(val_src, val_labels.to("meta"))
    )
    assert seen == [("meta", "meta")] * 2 and [r["val_acc"] for r in history] == [0.5, 0.5]


def test_no_host_read_per_step(plugins, monkeypatch):
    """Loss and accuracy are summed on the device and read once per epoch, not once per step."""
    reads = {"n": 0}
    for name in ("__float__", "__int__", "item"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **k):
            reads["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    probe = _probe(plugins, epochs=1, batch_size=4)
    train, labels = _data(64, 4)  # 16 steps
    history, _ = engine.train_probe(probe, train, labels, ProbeSettings(probe="linear"), torch.device("cpu"))
    assert reads["n"] <= 2, f"{reads['n']} host reads for 16 steps"
    assert 0 <= history[0]["train_acc"] <= 1 and history[0]["train_loss"] > 0
