"""Experiment loggers: csv, tensorboard, wandb (offline), and a third party's through the hook."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import pytest

import sslkit
from sslkit.cli import main
from sslkit.errors import PluginError, UnknownNameError

# 2 epochs of 5 steps (80 training images, 16 per step): the loop reports steps 5 and 10... per epoch.
TINY = {"backbone.width": 0.1, "backbone.blocks": 3, "data.subset": 100, "data.batch_size": 16, "data.holdout": 0.2}


def _train(tmp_path, plugins, loggers, epochs=2, **extra):
    return sslkit.train(
        "rotation", tmp_path / "run", epochs=epochs, device="cpu", loggers=loggers, plugins=plugins, **TINY, **extra
    )


def test_csv_rows_match_the_metrics(tmp_path, plugins):
    run = _train(tmp_path, plugins, ["csv"])
    with open(run.folder / "logs" / "epochs.csv") as f:
        epochs = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in epochs] == [1, 2]
    for row, record in zip(epochs, run.history, strict=True):
        assert float(row["train_loss"]) == pytest.approx(record["train_loss"])
        assert float(row["heldout_acc"]) == pytest.approx(record["heldout_acc"])
    with open(run.folder / "logs" / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    rows = [(int(r["epoch"]), int(r["step"]), int(r["global_step"])) for r in steps]
    # Every 5 steps (and sooner when steps are slow): each epoch's last report is its step 5.
    assert {(1, 5, 5), (2, 5, 10)} <= set(rows) and rows[-1] == (2, 5, 10)
    assert all(g == (e - 1) * 5 + s for e, s, g in rows)
    # The last report of an epoch covers the whole epoch: the epoch's mean loss.
    assert float(steps[-1]["loss"]) == pytest.approx(run.history[-1]["train_loss"], rel=1e-5)


def test_tensorboard_events_read_back(tmp_path, plugins):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = {"monitor.knn.data": "sample", "monitor.knn.bank": 200, "monitor.knn.queries": 100}
    run = _train(tmp_path, plugins, ["tensorboard"], **monitor)
    events = EventAccumulator(str(run.folder / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"step/loss", "step/acc", "step/images_per_s", "epoch/train_loss", "epoch/heldout_acc", "epoch/lr"} <= set(
        tags["scalars"]
    )
    loss = events.Scalars("epoch/train_loss")
    assert [e.step for e in loss] == [5, 10]  # the global step, as step/*: one x axis
    assert [e.value for e in events.Scalars("epoch")] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([r["train_loss"] for r in run.history], rel=1e-6)
    reported = [e.step for e in events.Scalars("step/loss")]
    assert {5, 10} <= set(reported) and reported[-1] == 10
    # The online kNN monitor, every epoch: metrics.jsonl and TensorBoard alike.
    knn = [r["knn_acc"] for r in run.history]
    assert len(knn) == 2 and all(0.0 <= v <= 1.0 for v in knn)
    assert [e.value for e in events.Scalars("epoch/knn_acc")] == pytest.approx(knn)
    assert {"show-batch", "curves"} <= set(tags["images"])
    assert [e.step for e in events.Images("curves")] == [5, 10]
    # The config as hyper-parameters (the HParams plugin's session info).
    content = events.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import plugin_data_pb2

    info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert info.hparams["optim.lr"].number_value == pytest.approx(run.config["optim"]["lr"])
    assert info.hparams["backbone.name"].string_value == "nin"


def test_wandb_offline_writes_a_run_folder(tmp_path, plugins, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = _train(tmp_path, plugins, ["wandb"], epochs=1)
    folders = list((run.folder / "wandb").glob("offline-run-*"))
    assert len(folders) == 1 and list(folders[0].glob("*.wandb")), list((run.folder / "wandb").iterdir())
    record = next(folders[0].glob("*.wandb")).read_bytes()  # the offline log, synced later
    assert b"rotation" in record and b"step/loss" in record and b"epoch/heldout_acc" in record
    pictures = sorted(p.name.split("_")[0] for p in (folders[0] / "files" / "media" / "images").iterdir())
    assert pictures == ["curves", "show-batch"]


def test_the_docs_logger_plugin_works(tmp_path, capsys):
    """docs/tracking.md's own-logger example, registered through the hook like an installed plugin."""
    page = (Path(__file__).parent.parent / "docs" / "tracking.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "register_callbacks" in b)
    module = types.ModuleType("print_logger")
    exec(compile(code, "docs/tracking.md", "exec"), module.__dict__)
    plugins = sslkit.load_plugins(extra=[module])
    assert "print" in sslkit.list_loggers(plugins=plugins)
    run = _train(tmp_path, plugins, ["print"], epochs=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"run: epoch 1 held-out accuracy {run.history[0]['heldout_acc']:.1%}", "run: done"]


def test_logger_errors_come_before_training(tmp_path, plugins, monkeypatch, capsys):
    with pytest.raises(UnknownNameError, match="unknown logger 'tensorbord' \\(did you mean 'tensorboard'\\?\\)"):
        _train(tmp_path, plugins, ["tensorbord"])
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(
        PluginError, match=r'--logger tensorboard needs the tensorboard package: pip install "sslkit\[loggers\]"'
    ):
        _train(tmp_path, plugins, ["tensorboard"])
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["train", "rotation", "--out", str(tmp_path / "run"), "--logger", "nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: unknown logger 'nope'") and err.count("\n") == 1


def test_cli_logger_option_writes_csv(tmp_path, capsys):
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "train",
                "rotation",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "run"),
                *sets,
                "--logger",
                "csv",
            ]
        )
    assert exit_.value.code in (0, None), capsys.readouterr().err
    rows = list(csv.DictReader((tmp_path / "run" / "logs" / "epochs.csv").read_text().splitlines()))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(history) == 1 and float(rows[0]["train_acc"]) == pytest.approx(history[0]["train_acc"])
