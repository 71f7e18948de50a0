"""Bounds on every numeric config option: a typo is a one-line error before anything is allocated."""

from __future__ import annotations

import pytest
import torch

from sslkit.config import RunConfig, assemble, validate_section
from sslkit.data.opener import check_decode, open_training_data
from sslkit.errors import ConfigError


def _rejected(sets: list[str], plugins, match: str) -> str:
    with pytest.raises(ConfigError) as err:
        assemble("rotation", plugins, sets=sets)
    msg = str(err.value)
    assert "\n" not in msg and match in msg, msg
    return msg


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ("data.image_size=100000", "less than or equal to 4096"),  # once a 15 TB allocation
        ("data.batch_size=100000000", "less than or equal to 65536"),
        ("data.workers=100000", "less than or equal to 256"),
        ("data.crop_padding=100000", "less than or equal to 256"),
        ("data.subset=0", "greater than or equal to 1"),
        ("data.memory_budget_gb=1e9", "less than or equal to 65536"),
        ("epochs=10000000000", "less than or equal to 100000"),
        ("seed=99999999999999999999", "less than 9223372036854775808"),  # once a crash in manual_seed
        ("seed=-1", "greater than or equal to 0"),  # once accepted
        ("checkpoint.every_steps=0", "greater than or equal to 1"),
        ("checkpoint.every_minutes=1e300", "less than or equal to 100000"),
        ("dist_timeout_minutes=1e300", "less than or equal to 100000"),  # once an OverflowError in timedelta
        ("schedule.milestones=[30, -1]", "config 'schedule.milestones.1'"),
        ("schedule.milestones=[30, 1000000000]", "less than or equal to 100000"),
        ("schedule.warmup_epochs=1e9", "less than or equal to 100000"),
        ("optim.lr=1e9", "less than or equal to 1000"),
    ],
)
def test_numeric_bounds(setting, match, plugins):
    _rejected([setting], plugins, match)


@pytest.mark.parametrize(
    "setting",
    [
        "optim.lr=NaN",  # JSON's NaN and Infinity parse to floats
        "optim.lr=Infinity",
        "optim.weight_decay=NaN",
        "schedule.gamma=Infinity",
        "schedule.warmup_epochs=NaN",
        "data.memory_budget_gb=Infinity",
        "data.holdout=NaN",
        "data.mean=[0.5, NaN, 0.5]",
        "data.std=[0.2, 0.2, Infinity]",
        "data.crop_scale=[NaN, 1.0]",
        "data.crop_ratio=[0.75, Infinity]",
        "checkpoint.every_minutes=NaN",
        "dist_timeout_minutes=Infinity",
    ],
)
def test_floats_are_finite(setting, plugins):
    _rejected([setting], plugins, "finite number")


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ("data.crop_scale=[0.9, 0.1]", "write [0.1, 0.9]"),
        ("data.crop_ratio=[1.5, 0.5]", "write [0.5, 1.5]"),
        ("data.crop_scale=[0.0, 1.0]", "greater than 0"),
        ("data.crop_scale=[0.5, 2.0]", "less than or equal to 1"),
        ("data.crop_ratio=[0.0, 1.0]", "greater than 0"),
        ("data.std=[0.2, 0.0, 0.2]", "greater than 0"),  # a division by zero when normalising
        ("data.mean=[]", "at least 1 item"),
    ],
)
def test_ranges(setting, match, plugins):
    _rejected([setting], plugins, match)


def test_defaults_and_ordinary_values_pass(plugins):
    cfg = assemble(
        "rotation",
        plugins,
        sets=[
            "seed=9223372036854775807",
            "data.crop_scale=[0.5, 0.5]",
            "data.image_size=224",
            "data.mean=[0.5, 0.5, 0.5]",
            "data.std=[0.25, 0.25, 0.25]",
        ],
    )
    assert cfg.seed == 2**63 - 1 and cfg.data.crop_scale == (0.5, 0.5)
    assert validate_section(RunConfig, {"task": {"name": "rotation"}, "backbone": {"name": "nin"}}, "").seed == 0


def test_decode_gpu_without_cuda_is_a_one_line_error(plugins):
    cfg = assemble("rotation", plugins, sets=["data.decode=gpu"])
    with pytest.raises(ConfigError, match="data.decode=gpu") as err:
        check_decode(cfg.data, torch.device("cpu"))
    assert "\n" not in str(err.value) and "data.decode=cpu" in str(err.value)
    with pytest.raises(ConfigError, match="data.decode=gpu"):  # before any data is opened
        open_training_data(cfg.data, plugins, device=torch.device("cpu"))
    check_decode(cfg.data, torch.device("cuda"))  # a CUDA run decodes there
    check_decode(assemble("rotation", plugins).data, torch.device("cpu"))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--set", "data.image_size=100000"], "config 'data.image_size'"),
        (["--seed", "99999999999999999999"], "config 'seed'"),
        (["--set", "data.decode=gpu", "--device", "cpu"], "data.decode=gpu decodes on a CUDA GPU"),
    ],
)
def test_cli_one_line_errors(args, match, tmp_path, cli):
    env = {"SSLKIT_DATA": str(tmp_path / "data"), "CUDA_VISIBLE_DEVICES": ""}
    out = cli("train", "rotation", "--epochs", "1", "--out", str(tmp_path / "run"), *args, env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and match in out.stderr, out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith("error:")]) == 1
