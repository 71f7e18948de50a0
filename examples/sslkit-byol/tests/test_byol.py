"""Tests of the BYOL plugin: sslkit's conformance checks, the momentum schedule of the paper, the
EMA target moved only by the engine's after-step hook, and a resume that continues the target
exactly. Only sslkit's public API is used."""

from __future__ import annotations

import math

import pytest
import torch

import sslkit
from sslkit.testing import check_task
from sslkit_byol import momentum, regression_loss


def test_conformance(sslkit_plugins, sslkit_device):
    report = check_task("byol", plugins=sslkit_plugins, device=sslkit_device, batch=8, options={"hidden_dim": 32})
    assert report.losses[-1] < report.losses[0]
    assert any("frozen parameters untouched" in c for c in report.checks)


def test_momentum_ramps_from_tau_base_to_one_over_the_run():
    assert momentum(0.996, 0.0) == pytest.approx(0.996)
    assert momentum(0.996, 0.5) == pytest.approx(0.998)
    assert momentum(0.996, 1.0) == pytest.approx(1.0)
    assert momentum(0.99, 0.25) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def test_regression_loss_is_two_minus_two_cosine():
    p, z = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert float(regression_loss(p, z)) == pytest.approx(2.0)
    assert float(regression_loss(p, 5 * p)) == pytest.approx(0.0)


TINY = {
    "epochs": 2,
    "backbone.blocks": 3,
    "backbone.width": 0.1,
    "data.subset": 96,
    "data.batch_size": 32,
    "data.holdout": 0.25,
    "task.hidden_dim": 32,
    "device": "cpu",
}


def test_the_target_follows_the_online_network_only_after_optimiser_steps(tmp_path, sslkit_plugins):
    run = sslkit.train("byol", tmp_path / "run", data="sample", plugins=sslkit_plugins, **TINY)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["task"]
    online = run.backbone.state_dict()
    target = {k.removeprefix("target_backbone."): v for k, v in state.items() if k.startswith("target_backbone.")}
    weights = [k for k in online if k.endswith("weight") and online[k].dim() > 1]
    assert any(not torch.equal(online[k], target[k]) for k in weights), "the target never moved apart from the copy"
    steps = 2 * (72 // 32)  # 2 epochs of 2 steps: 72 training images
    assert float(state["tau"]) == pytest.approx(momentum(0.99, (steps - 1) / steps))
    assert run.history[-1]["train_std"] > 0 and "train_tau" in run.history[-1]


class _StopAfterFirstEpoch(sslkit.Callback):
    def on_epoch_end(self, record):
        raise KeyboardInterrupt  # as Ctrl-C after the epoch's checkpoint


def test_a_resumed_run_continues_the_target_exactly(tmp_path, sslkit_plugins):
    """Interrupted after epoch 1 and resumed: the target network, its momentum and the online
    weights end exactly as in an uninterrupted run (the schedule needs the run's total steps)."""
    sslkit.train("byol", tmp_path / "whole", data="sample", plugins=sslkit_plugins, **TINY)
    with pytest.raises(KeyboardInterrupt):
        sslkit.train(
            "byol", tmp_path / "cut", data="sample", plugins=sslkit_plugins, callbacks=[_StopAfterFirstEpoch()], **TINY
        )
    sslkit.train("byol", tmp_path / "cut", data="sample", plugins=sslkit_plugins, resume=True, **TINY)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["task"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["task"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
