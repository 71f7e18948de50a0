"""Rotation, context and jigsaw train exactly as before the task interface grew views, step hooks
and loss outputs (issue 20): the same seed gives the same metrics and weights as the numbers
below, recorded with the engine as it was before that change (2 epochs of 4 steps on the
embedded sample data, a 3-block NIN at width 0.1, CPU)."""

from __future__ import annotations

import pytest
import torch

from sslkit.config import assemble
from sslkit.engine.trainer import train

RECORDED = {
    "rotation": {
        "history": [
            {
                "train_loss": 1.3139194548130035,
                "train_acc": 0.419921875,
                "heldout_loss": 1.152241587638855,
                "heldout_acc": 0.7109375,
            },
            {
                "train_loss": 1.058784767985344,
                "train_acc": 0.720703125,
                "heldout_loss": 0.7643970251083374,
                "heldout_acc": 0.75,
            },
        ],
        "weights": 808.4220674646249,
    },
    "context": {
        "history": [
            {
                "train_loss": 2.107458382844925,
                "train_acc": 0.18359375,
                "heldout_loss": 1.696328043937683,
                "heldout_acc": 0.2578125,
            },
            {
                "train_loss": 1.9031760096549988,
                "train_acc": 0.267578125,
                "heldout_loss": 1.657891035079956,
                "heldout_acc": 0.3203125,
            },
        ],
        "weights": 913.7388418357095,
    },
    "jigsaw": {
        "history": [
            {
                "train_loss": 3.17765074968338,
                "train_acc": 0.0234375,
                "heldout_loss": 3.3163843154907227,
                "heldout_acc": 0.03125,
            },
            {
                "train_loss": 3.1505553126335144,
                "train_acc": 0.0703125,
                "heldout_loss": 3.259507417678833,
                "heldout_acc": 0.03125,
            },
        ],
        "weights": 780.6768551501045,
    },
}

EXTRA = {"jigsaw": ["task.permutations=24"]}


@pytest.fixture(autouse=True)
def _two_threads():
    """The numbers were recorded with 2 intra-op threads; float sums split differently with
    another thread count (a pytest-xdist worker computes with 1), which moves losses by ~0.3%."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("task", sorted(RECORDED))
def test_same_seed_same_metrics_as_before_the_interface_grew(plugins, tmp_path, task):
    if task not in plugins.tasks:
        pytest.skip(f"the {task} plugin is not installed")
    sets = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=160", "data.batch_size=32", "data.holdout=0.2"]
    cfg = assemble(task, plugins, sets=[*sets, *EXTRA.get(task, [])], flags={"epochs": 2, "device": "cpu", "seed": 0})
    result = train(cfg, tmp_path, plugins=plugins)
    want = RECORDED[task]
    for got, rec in zip(result.history, want["history"], strict=True):
        for key in ("train_loss", "heldout_loss"):
            assert got[key] == pytest.approx(rec[key], rel=1e-3), (task, key)
        for key in ("train_acc", "heldout_acc"):
            assert got[key] == pytest.approx(rec[key], abs=1 / 64), (task, key)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["backbone"]
    weights = float(sum(v.double().abs().sum() for v in state.values() if v.is_floating_point()))
    assert weights == pytest.approx(want["weights"], rel=1e-4)
