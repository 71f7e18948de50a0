"""The learning-rate schedule: a pure function of (epoch, step), per step for cosine / linear."""

from __future__ import annotations

import pytest
import torch

from sslkit.config import ScheduleConfig
from sslkit.engine.schedule import lr_factor


def test_step_matches_torch_multisteplr():
    schedule = ScheduleConfig(milestones=(2, 4), gamma=0.1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_lr = torch.optim.lr_scheduler.MultiStepLR(opt, [2, 4], 0.1)
    for epoch in range(6):
        for step in (0, 3, 9):  # constant within an epoch, as before
            assert lr_factor(schedule, 6, epoch, step, 10) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        torch_lr.step()


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_smooth_kinds_decay_every_step_from_one_to_zero(kind):
    schedule = ScheduleConfig(kind=kind)
    epochs, steps = 3, 7
    f = [lr_factor(schedule, epochs, e, s, steps) for e in range(epochs) for s in range(steps)]
    assert f[0] == 1.0 and all(a > b for a, b in zip(f, f[1:], strict=False)) and 0 < f[-1] < 0.05
    assert lr_factor(schedule, epochs, 1, 3, steps) == pytest.approx(
        0.5 * (1 + torch.cos(torch.tensor(torch.pi * 10 / 21)).item()) if kind == "cosine" else 1 - 10 / 21
    )


def test_warmup_ramps_linearly_then_follows_the_schedule():
    schedule = ScheduleConfig(kind="cosine", warmup_epochs=1)
    ramp = [lr_factor(schedule, 5, 0, s, 4) for s in range(4)]
    assert ramp == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(schedule, 5, 1, 0, 4) == 1.0 and lr_factor(schedule, 5, 3, 0, 4) == pytest.approx(0.5)
    step = ScheduleConfig(warmup_epochs=0.5, milestones=(1,), gamma=0.5)
    assert lr_factor(step, 2, 0, 0, 4) == pytest.approx(0.5) and lr_factor(step, 2, 1, 0, 4) == 0.5


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="step"):
        ScheduleConfig(kind="exponential")


def test_the_docs_schedule_example_trains(plugins, tmp_path, capsys):
    """docs/configuration.md's schedule.toml, as written, on a tiny run."""
    import json
    import re
    from pathlib import Path

    from sslkit.cli import main

    page = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    toml = re.search(r"```toml\n(# schedule\.toml\n.*?)```", page, re.S).group(1)
    (tmp_path / "schedule.toml").write_text(toml)
    args = ["train", "rotation", "--config", str(tmp_path / "schedule.toml"), "--out", str(tmp_path / "run")]
    args += ["--set", "backbone.width=0.1", "--set", "data.subset=128", "--batch-size", "32", "--device", "cpu"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["schedule"]["kind"] == "cosine" and [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["lr"] > rows[1]["lr"] > 0  # the last step's rate, near zero at the end
