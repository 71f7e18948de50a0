"""Tests of the SimCLR plugin: sslkit's conformance checks, NT-Xent against its definition,
multi-crop, and global negatives under two processes. Only sslkit's public API is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sslkit.testing import check_task
from sslkit_simclr.loss import nt_xent


def test_conformance(sslkit_plugins, sslkit_device):
    report = check_task("simclr", plugins=sslkit_plugins, device=sslkit_device, batch=8, options={"hidden_dim": 32})
    assert report.losses[-1] < report.losses[0]
    assert any("views" in c for c in report.checks) and any("metrics acc, std" in c for c in report.checks)


def _reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """Eq. 1 of Chen et al. 2020, term by term: l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    s = z @ z.T
    total = torch.zeros(())
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = torch.cat([s[i, :i], s[i, i + 1 :]])
        total = total - (s[i, j] / t - torch.logsumexp(others / t, 0))
    return total / (2 * n)


def test_nt_xent_is_the_papers_loss():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss, acc = nt_xent([z1, z2], 0.5)
    torch.testing.assert_close(loss, _reference(z1, z2, 0.5))
    same, _ = nt_xent([z1, z1 + 1e-4], 0.1)
    assert same < loss and 0.0 <= float(acc) <= 1.0
    perfect, acc = nt_xent([torch.eye(6), torch.eye(6)], 0.1)
    assert float(acc) == 1.0 and float(perfect) < 0.1


def test_multi_crop_trains_one_epoch_on_the_sample_data(tmp_path):
    """2 x 32 px + 6 x 16 px views per image: the engine draws both groups, the task embeds each size in one call."""
    views = json.dumps([{"count": 2, "jitter": 0.8, "grayscale": 0.2}, {"count": 6, "size": 16, "scale": [0.05, 0.3]}])
    args = ["--set", f"task.views={views}", "--set", "data.subset=128", "--set", "data.batch_size=32"]
    args += ["--set", "backbone.blocks=3", "--set", "backbone.width=0.1", "--set", "task.hidden_dim=32"]
    cmd = [sys.executable, "-m", "sslkit", "train", "simclr", "--data", "sample", "--epochs", "1", "--device", "cpu"]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "run"), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train_loss"] > 0 and 0 <= record["train_acc"] <= 1 and record["train_std"] > 0


def _train(tmp_path, name: str, nproc: int) -> list[dict]:
    # One step an epoch (40 images, 8 held out, batch 32): epoch 1's loss is the first step's
    # forward, epoch 2's the step after the first update. A tiny contrastive net near collapse is
    # chaotic (1 vs 2 threads in one process already differ by 1e-3 after a few steps), so the
    # comparison is made where float noise has not been amplified yet.
    sets = ["backbone.blocks=3", "backbone.width=0.1", "data.batch_size=32", "data.subset=40", "data.holdout=0.2"]
    sets += ["epochs=2", "task.hidden_dim=32", "optim.name=sgd", "optim.lr=0.05", "precision=fp32"]
    cmd = ["-m", "sslkit", "train", "simclr", "--data", "sample", "--device", "cpu", "--out", str(tmp_path / name)]
    cmd += [a for s in sets for a in ("--set", s)]
    if nproc > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_with_global_negatives_equal_one(tmp_path):
    """Views drawn for the global batch, negatives gathered with gradients, BatchNorm synchronised
    (the projector's BatchNorm1d too): 2 processes train as 1, within the rotation test's tolerance."""
    one, two = _train(tmp_path, "one", 1), _train(tmp_path, "two", 2)
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)  # forward, then after an update
    assert two[0]["heldout_loss"] == pytest.approx(one[0]["heldout_loss"], rel=1e-4)  # the updated weights
