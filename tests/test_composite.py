"""Several pretext tasks on one trunk (``sslkit train rotation+context``): a mix of one task is
that task alone, number for number; per-task metrics and the weighted total; alternating steps;
exact resume; a NaN named by its task; the conformance kit; export and probes of a mix's run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sslkit.config import assemble
from sslkit.engine.metrics import TIMING_KEYS, NonFiniteLoss
from sslkit.engine.trainer import train
from sslkit.errors import ConfigError, UnknownNameError
from sslkit.interfaces import Callback, StepInfo
from sslkit.plugins import load_plugins

TINY = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=64", "data.batch_size=16", "data.holdout=0.25"]


def _train(plugins, task, out, epochs=2, sets=(), **kwargs):
    cfg = assemble(task, plugins, sets=[*TINY, *sets], flags={"epochs": epochs, "device": "cpu", "seed": 0})
    return train(cfg, out, plugins=plugins, **kwargs)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["backbone"]


@pytest.mark.parametrize("task", ["rotation", "context"])
def test_a_mix_of_one_task_is_that_task_alone_number_for_number(plugins, tmp_path, task):
    """``rotation+`` (the mix of rotation alone) at the same seed: the same losses and accuracies
    in metrics.jsonl, under the task's name, and the same backbone weights, bit for bit."""
    alone = _train(plugins, task, tmp_path / "alone").history
    mixed = _train(plugins, f"{task}+", tmp_path / "mix").history
    for a, m in zip(alone, mixed, strict=True):
        for key in ("train_loss", "train_acc", "heldout_loss", "heldout_acc"):
            assert m[f"{task}/{key}"] == a[key], key
        assert m["train_loss"] == a["train_loss"] and m["heldout_loss"] == a["heldout_loss"]  # weight 1
    written = [json.loads(line) for line in (tmp_path / "mix" / "metrics.jsonl").read_text().splitlines()]
    assert [r[f"{task}/heldout_acc"] for r in written] == [r["heldout_acc"] for r in alone]
    a, m = _weights(tmp_path / "alone"), _weights(tmp_path / "mix")
    assert a.keys() == m.keys() and all(torch.equal(a[k], m[k]) for k in a)


def test_each_task_reported_by_name_beside_the_weighted_total(plugins, tmp_path):
    sets = ["task.weights.rotation=0.5", "task.weights.context=2", "task.context.hidden=16"]
    (record,) = _train(plugins, "rotation+context", tmp_path / "run", epochs=1, sets=sets).history
    for task in ("rotation", "context"):
        for key in ("train_loss", "train_acc", "heldout_loss", "heldout_acc"):
            assert math.isfinite(record[f"{task}/{key}"]), (task, key)
    # Every step adds both weighted losses: so does the epoch's average of them.
    total = 0.5 * record["rotation/train_loss"] + 2 * record["context/train_loss"]
    assert record["train_loss"] == pytest.approx(total, rel=1e-6)  # float32 sums per step
    assert record["heldout_loss"] == pytest.approx(
        0.5 * record["rotation/heldout_loss"] + 2 * record["context/heldout_loss"], rel=1e-6
    )
    assert "train_acc" not in record  # one accuracy per task, none for the mix
    config = json.loads((tmp_path / "run" / "config.json").read_text())["task"]
    assert config["weights"] == {"rotation": 0.5, "context": 2.0} and config["context"]["hidden"] == 16
    assert config["sampling"] == "all" and config["rotation"]["angles"] == [0.0, 90.0, 180.0, 270.0]


def test_the_progress_line_and_loggers_name_each_task(plugins, tmp_path):
    import csv

    import sslkit
    from sslkit.progress import epoch_text, metrics_text

    steps: list[dict] = []

    class Seen(Callback):
        def on_step(self, epoch, step, steps_, metrics):
            steps.append(metrics)

    sets = dict(s.split("=") for s in TINY)
    run = sslkit.train(
        "rotation+context", tmp_path / "run", epochs=1, device="cpu", loggers=["csv"], callbacks=[Seen()],
        progress=False, plugins=plugins, **{k: json.loads(v) for k, v in sets.items()},
    )  # fmt: skip
    assert {"loss", "rotation/loss", "rotation/acc", "context/loss", "context/acc"} <= set(steps[-1])
    assert "rotation/acc" in metrics_text(steps[-1])
    line = epoch_text(run.history[-1])
    assert "rotation/loss" in line and "context/held-out acc" in line
    with open(tmp_path / "run" / "logs" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["context/acc"]) == pytest.approx(steps[-1]["context/acc"])
    with open(tmp_path / "run" / "logs" / "epochs.csv", newline="") as f:
        (epoch,) = csv.DictReader(f)
    assert float(epoch["rotation/heldout_acc"]) == pytest.approx(run.history[-1]["rotation/heldout_acc"])


class Interrupted(Exception):
    pass


class Stop(Callback):
    """Interrupts the first epoch at its last step's report (after a mid-epoch checkpoint)."""

    def on_step(self, epoch, step, steps, metrics):
        if epoch == 0 and step == steps:
            raise Interrupted


def test_alternating_steps_resume_exactly_mid_epoch(plugins, tmp_path):
    """task.sampling=alternate: one task per optimiser step, in turn; a run stopped mid-epoch
    (its partial sums and the step count in the checkpoint) ends as the uninterrupted one."""
    sets = ["task.sampling=alternate", "checkpoint.every_steps=1", "data.subset=96"]
    straight = _train(plugins, "rotation+context", tmp_path / "a", sets=sets).history
    with pytest.raises(Interrupted):
        _train(plugins, "rotation+context", tmp_path / "b", sets=sets, callbacks=[Stop()])
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed = _train(plugins, "rotation+context", tmp_path / "b", sets=sets, resume=True).history

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    assert strip(resumed) == strip(straight)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["task"]["steps_done"] == 8


def test_alternate_trains_one_task_per_step_and_evaluates_all(plugins):
    from sslkit.factory import create_backbone, create_task

    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    task = create_task("rotation+context", backbone, plugins, sampling="alternate")
    info = dict(epoch=0, step=0, steps_per_epoch=4, total_steps=4, world_size=1, global_batch=4)
    seen = []
    for k in range(1, 5):
        seen.append(task.active())
        task.after_step(backbone, StepInfo(global_step=k, **info))
    assert seen == [("rotation",), ("context",), ("rotation",), ("context",)]
    assert task.eval().active() == ("rotation", "context")
    with torch.no_grad():  # precise BatchNorm: train mode, no learning
        assert task.train().active() == ("rotation", "context")
    fresh = create_task("rotation+context", backbone, plugins, sampling="alternate")
    fresh.load_state_dict(task.state_dict())  # a resumed run goes on with the right task
    assert fresh.active() == ("rotation",) and fresh._steps_done == 4


def test_bn_stats_keeps_the_backbones_running_statistics_to_one_task(plugins):
    """task.bn_stats=rotation: the same training outputs as the default, but the backbone's
    BatchNorm running statistics are those of rotation's inputs alone (context's patches leave
    them as they were); the default averages both."""
    import copy

    from sslkit.factory import create_backbone, create_task

    torch.manual_seed(0)
    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    task = create_task("rotation+context", backbone, plugins, bn_stats="rotation").train()
    images = torch.randn(8, 3, 32, 32)
    batch, _ = task.prepare({"rotation": images, "context": images}, torch.Generator().manual_seed(0))

    def running(b):
        return torch.cat([m.running_mean for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)])

    kept, mixed, alone = (copy.deepcopy(backbone) for _ in range(3))
    torch.manual_seed(1)  # the same dropout masks in the heads
    out_kept = task(kept, batch)
    task.bn_stats = "all"
    torch.manual_seed(1)
    out_mixed = task(mixed, batch)
    task.task("rotation")(alone, batch["rotation"][0])
    for name in ("rotation", "context"):  # training reads batch statistics only: the same outputs
        assert torch.equal(out_kept[name][0], out_mixed[name][0])
    assert torch.equal(running(kept), running(alone)) and not torch.equal(running(mixed), running(alone))
    assert all(m.track_running_stats for m in kept.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ConfigError, match="bn_stats"):
        assemble("rotation+context", plugins, sets=["task.bn_stats=jigsaw"])


def test_a_nan_loss_stops_the_run_naming_its_task(plugins, tmp_path, monkeypatch):
    context = plugins.tasks.get("context")
    real = context.loss
    monkeypatch.setattr(context, "loss", lambda self, out, tgt: real(self, out, tgt) * float("nan"))
    with pytest.raises(NonFiniteLoss, match=r"^task 'context' \(in the mix 'rotation\+context'\): the loss is nan"):
        _train(plugins, "rotation+context", tmp_path / "run", epochs=1)


def test_the_conformance_kit_runs_on_a_mix(plugins):
    from sslkit.testing import check_task

    report = check_task("rotation+context", plugins=plugins)
    assert "checkpoint round trip" in report.checks and report.losses[-1] < report.losses[0]
    check_task("rotation+context", options={"sampling": "alternate", "weights": {"context": 0.5}}, plugins=plugins)


def test_names_presets_and_bad_mixes(plugins):
    mix = plugins.tasks.get("rotation+context")
    assert mix.default_preset == "paper"  # the first task's
    paper = mix.presets["paper"]  # RotNet's schedule and optimiser, context's crop without padding
    assert paper["schedule"] == {"milestones": [30, 60, 80], "gamma": 0.2} and paper["epochs"] == 100
    assert paper["data"] == {"batch_size": 128, "crop_padding": 0}
    assert mix.presets["upsampled"]["task"] == {"context": {"upsample": 64}}
    cfg = assemble("rotation+context", plugins, sets=["task.context.patch_size=8"])
    assert cfg.task["context"]["patch_size"] == 8 and cfg.data.crop_padding == 0 and cfg.preset == "paper"
    assert plugins.tasks.get("rotation+context") is mix  # built once per name
    with pytest.raises(UnknownNameError, match="the mix 'rotation\\+rotaton': unknown pretext task 'rotaton'"):
        plugins.tasks.get("rotation+rotaton")
    for bad, message in (
        ("rotation+rotation", "names 'rotation' twice"),
        ("rotation++context", "has an empty task name"),
        ("+rotation", "has an empty task name"),
    ):
        with pytest.raises(ConfigError, match=message):
            plugins.tasks.get(bad)
    with pytest.raises(ConfigError, match="every weight is 0"):
        assemble("rotation+context", plugins, sets=["task.weights.rotation=0", "task.weights.context=0"])


def test_a_task_name_with_a_plus_is_refused_at_registration():
    import types

    from sslkit import PretextTask, hookimpl

    class Odd(PretextTask):
        pass

    plugin = types.SimpleNamespace(
        __name__="odd", register_pretext_tasks=hookimpl(lambda register: register("a+b", Odd))
    )
    plugins = load_plugins(extra=[plugin], entry_points=False)
    failed = {r.name: r.error for r in plugins.records if r.status == "failed"}
    assert "'+' joins the tasks of a mix" in failed["odd"]


def test_export_and_probes_read_the_backbone_of_a_mix(plugins, tmp_path):
    import sslkit

    _train(plugins, "rotation+context", tmp_path / "run", epochs=1)
    run = sslkit.load(tmp_path / "run")
    assert run.task == "rotation+context"
    report = run.export(tmp_path / "backbone.pt", format="torch")
    exported = torch.load(report.path, weights_only=True)
    assert exported.keys() == _weights(tmp_path / "run").keys()  # the backbone only: no head
    probe = run.probe(probe="knn", layers=["block2"], labels_per_class=10, device="cpu", progress=False)
    assert 0 <= probe["layers"]["block2"]["test_acc"] <= 1


def test_rotation_plus_jigsaw_trains_from_the_command_line(tmp_path, cli):
    pytest.importorskip("sslkit_jigsaw")
    sets = [*TINY, "task.jigsaw.permutations=24", "task.weights.jigsaw=0.5"]
    args = ["train", "rotation+jigsaw", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
    done = cli(*args, *[x for s in sets for x in ("--set", s)])
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("rotation/train_loss", "rotation/heldout_acc", "jigsaw/train_loss", "jigsaw/heldout_acc"):
        assert math.isfinite(record[key]), key
    assert "rotation/loss" in done.stdout + done.stderr  # the progress line names each task
