"""The training engine end to end on tiny models: outputs, checkpoints and exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sslkit.checkpoint import FORMAT
from sslkit.config import assemble
from sslkit.engine.metrics import TIMING_KEYS
from sslkit.engine.trainer import train
from sslkit.errors import CheckpointError

TINY = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=192", "data.batch_size=32", "data.holdout=0.25"]


def _config(plugins, epochs=2, extra=()):
    return assemble("rotation", plugins, sets=[*TINY, *extra], flags={"epochs": epochs, "device": "cpu"})


def test_tiny_run_writes_checkpoint_and_metrics(plugins, tmp_path):
    result = train(_config(plugins, epochs=2), tmp_path / "run", plugins=plugins)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert 0 <= r["heldout_acc"] <= 1 and r["train_loss"] > 0 and r["images_per_s"] > 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["format"] == FORMAT and state["epoch"] == 2
    assert state["config"]["backbone"] == {"name": "nin", "blocks": 3, "width": 0.1, "in_channels": 3}
    assert state["config"]["data"]["mean"] is not None  # normalisation recorded with the run
    assert "rotation" in state["plugins"] and state["history"] == rows
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == state["config"]
    assert result.last == rows[-1]


def test_refuses_to_overwrite_a_run(plugins, tmp_path):
    train(_config(plugins, epochs=1), tmp_path, plugins=plugins)
    with pytest.raises(CheckpointError, match="--resume"):
        train(_config(plugins, epochs=1), tmp_path, plugins=plugins)


def test_resume_reproduces_uninterrupted_run(plugins, tmp_path):
    straight = train(_config(plugins, epochs=3), tmp_path / "a", plugins=plugins).history
    train(_config(plugins, epochs=1), tmp_path / "b", plugins=plugins)
    resumed = train(_config(plugins, epochs=3), tmp_path / "b", plugins=plugins, resume=True).history

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    assert strip(resumed) == strip(straight)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["backbone"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["backbone"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_rejects_a_changed_config(plugins, tmp_path):
    train(_config(plugins, epochs=1), tmp_path, plugins=plugins)
    with pytest.raises(CheckpointError, match="optim"):
        train(_config(plugins, epochs=2, extra=["optim.lr=0.05"]), tmp_path, plugins=plugins, resume=True)


def test_loss_decreases_on_sample(plugins, tmp_path):
    cfg = assemble(
        "rotation",
        plugins,
        sets=["backbone.width=0.15", "data.subset=1024", "data.batch_size=64"],
        flags={"epochs": 3, "device": "cpu"},
    )
    rows = train(cfg, tmp_path, plugins=plugins).history
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["heldout_acc"] > 0.4  # chance is 0.25


def test_sigkill_then_resume_loses_no_epoch(tmp_path, cli):
    """Kill the CLI's process mid-epoch with SIGKILL; --resume finishes with the uninterrupted
    metrics. (The reference and the resume run in this process, tests/cli_run.py.)"""
    sets = [a for s in TINY[:2] + ["data.subset=512", "data.batch_size=32", "data.holdout=0.1"] for a in ("--set", s)]
    args = ["train", "rotation", "--epochs", "3", "--device", "cpu", *sets]
    base = [sys.executable, "-m", "sslkit", *args]
    env = {**os.environ, "SSLKIT_DATA": str(tmp_path / "data")}
    ref = cli(*args, "--out", str(tmp_path / "ref"), env={"SSLKIT_DATA": str(tmp_path / "data")})
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen([*base, "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # epoch 1 is saved: the kill lands inside epoch 2
    proc.wait()
    done = len((run / "metrics.jsonl").read_text().splitlines())
    assert 1 <= done < 3, "the kill should land before the run finished"
    resumed = cli(*args, "--out", str(run), "--resume", env={"SSLKIT_DATA": str(tmp_path / "data")})
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr

    def rows(p):
        keys = ("epoch", "train_loss", "train_acc", "heldout_loss", "heldout_acc", "lr")
        return [
            {k: v for k, v in json.loads(line).items() if k in keys}
            for line in (p / "metrics.jsonl").read_text().splitlines()
        ]

    assert rows(run) == rows(tmp_path / "ref")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_bf16_autocast_and_nchw(plugins, tmp_path):
    """bf16 autocast (NCHW) runs in bf16 (not the fp32 numbers) and follows the fp32 curve."""
    fp32 = train(_config(plugins, epochs=1, extra=["channels_last=false"]), tmp_path / "a", plugins=plugins).history[0]
    cfg = _config(plugins, epochs=1, extra=["precision=bf16", "channels_last=false"])
    bf16 = train(cfg, tmp_path / "b", plugins=plugins).history[0]
    assert bf16["train_loss"] != fp32["train_loss"]
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)
    assert bf16["heldout_loss"] == pytest.approx(fp32["heldout_loss"], rel=0.05)


def test_exclude_test_leaves_out_the_probes_test_split(plugins, tmp_path):
    """data.exclude_test removes exactly the images the probes carve as their test split."""
    from PIL import Image

    from sslkit.data.datasets import carve_test
    from sslkit.data.opener import load_dataset
    from sslkit.probes.splits import make_splits

    folder = tmp_path / "imgs"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(40):
            Image.new("RGB", (32, 32), (i * 6, 100 if c == "a" else 200, 50)).save(folder / c / f"{i}.png")
    data = load_dataset(str(folder), plugins)
    rest, test = carve_test(data, 0.2, seed=0)
    probe_test = make_splits(data, None, val_fraction=0.1, test_fraction=0.2, labels_per_class=None, seed=0).test
    assert test.files == probe_test.files and not set(rest.files) & set(test.files)
    cfg = assemble(
        "rotation",
        plugins,
        sets=[*TINY[:2], "data.batch_size=16", "data.holdout=0", "data.exclude_test=0.2"],
        flags={"epochs": 1, "device": "cpu", "data": {"name": str(folder)}},
    )
    info = {}

    class Spy:
        def on_start(self, i):
            info.update(i)

        def on_step(self, *a):
            pass

        def on_epoch_end(self, r):
            pass

    train(cfg, tmp_path / "run", plugins=plugins, callbacks=[Spy()])
    assert info["train_images"] == len(rest) == 64


def test_precise_bn_reads_about_2560_images_whatever_the_batch_size():
    from sslkit.engine.precise_bn import precise_batches

    assert [precise_batches(b, 1000) for b in (16, 128, 256, 1024)] == [20, 20, 10, 3]
    assert precise_batches(128, 4) == 4 and precise_batches(512, 0) == 1  # no more than the data has


def test_a_tiny_run_is_not_scored_at_chance(plugins, tmp_path):
    """10 steps leave BatchNorm's running averages at the initialisation: eval mode scored exactly
    chance (25 %) although the batch-statistics accuracy was 85 %. The statistics are recomputed
    before such early evaluations; the training curve does not change."""
    sets = ["backbone.width=0.1", "data.subset=400", "data.batch_size=32", "data.holdout=0.2"]
    cfg = assemble("rotation", plugins, sets=sets, flags={"epochs": 1, "device": "cpu"})
    row = train(cfg, tmp_path, plugins=plugins).history[0]
    assert row["precise_bn_batches"] == 10 and row["train_acc"] > 0.4
    assert row["heldout_acc"] > 0.6  # chance is 0.25
