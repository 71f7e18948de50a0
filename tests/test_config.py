"""Run-config assembly: --set parsing, presets, config files, flags and one-line errors."""

from __future__ import annotations

import json

import pytest

from sslkit.config import RunConfig, assemble, deep_merge, parse_sets, parse_value, read_config_file
from sslkit.errors import ConfigError, SSLKitError, UnknownNameError
from sslkit.plugins import load_plugins


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(selection="")


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    assert msg
    return msg


# --------------------------------------------------------------------------- parse_sets


def test_parse_sets_values():
    out = parse_sets(
        [
            "epochs=5",
            "optim.lr=0.05",
            "data.flip=false",
            "compile=true",
            "schedule.milestones=[1, 2, 3]",
            "device=cpu",
            "data.subset=null",
            "data.name=my/folder",
        ]
    )
    assert out == {
        "epochs": 5,
        "optim": {"lr": 0.05},
        "data": {"flip": False, "subset": None, "name": "my/folder"},
        "compile": True,
        "schedule": {"milestones": [1, 2, 3]},
        "device": "cpu",
    }
    assert isinstance(out["epochs"], int)
    assert isinstance(out["optim"]["lr"], float)


def test_parse_sets_nested_and_spaces():
    out = parse_sets(["a.b.c=1", "a.b.d=x", " a.e = 2 ", "task.angles=[0,180]"])
    assert out == {"a": {"b": {"c": 1, "d": "x"}, "e": 2}, "task": {"angles": [0, 180]}}


def test_parse_sets_value_may_contain_equals():
    assert parse_sets(["data.name=a=b"]) == {"data": {"name": "a=b"}}


def test_parse_sets_later_wins():
    assert parse_sets(["epochs=1", "epochs=2"]) == {"epochs": 2}


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("0.5") == 0.5
    assert parse_value("true") is True
    assert parse_value("null") is None
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("abc") == "abc"
    assert parse_value("cuda:0") == "cuda:0"


@pytest.mark.parametrize("item", ["foo", "=3", " =3", ""])
def test_parse_sets_malformed(item):
    with pytest.raises(ConfigError) as info:
        parse_sets([item])
    msg = _one_line(info)
    assert "KEY=VALUE" in msg


def test_parse_sets_value_and_section_conflict():
    with pytest.raises(ConfigError) as info:
        parse_sets(["a=1", "a.b=2"])
    assert "'a'" in _one_line(info)


def test_deep_merge():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert deep_merge(base, {"a": {"b": 9}, "e": 4}) == {"a": {"b": 9, "c": 2}, "d": 3, "e": 4}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}  # not mutated


# --------------------------------------------------------------------------- presets


def test_default_preset_is_paper(plugins):
    cfg = assemble("rotation", plugins)
    assert isinstance(cfg, RunConfig)
    assert cfg.preset == "paper"
    assert cfg.epochs == 100
    assert cfg.schedule.milestones == (30, 60, 80)
    assert cfg.schedule.gamma == 0.2
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.1 and cfg.optim.nesterov
    assert cfg.data.batch_size == 128
    assert cfg.task["name"] == "rotation"


def test_repo_preset(plugins):
    cfg = assemble("rotation", plugins, preset="repo")
    assert cfg.preset == "repo"
    assert cfg.epochs == 200
    assert cfg.schedule.milestones == (60, 120, 160)


def test_defaults_filled_in(plugins):
    cfg = assemble("rotation", plugins)
    assert cfg.backbone == {"name": "nin", "blocks": 4, "width": 1.0, "in_channels": 3}
    assert cfg.task["name"] == "rotation"
    assert cfg.task["angles"] == [0.0, 90.0, 180.0, 270.0]
    assert cfg.task["mode"] == "all"
    assert cfg.data.name == "sample"
    # the resolved config round-trips through JSON (it is stored in checkpoints)
    again = RunConfig.model_validate(json.loads(cfg.model_dump_json()))
    assert again.backbone == cfg.backbone and again.epochs == cfg.epochs


def test_flags_override_presets(plugins):
    cfg = assemble(
        "rotation",
        plugins,
        preset="repo",
        flags={"epochs": 3, "data": {"batch_size": 16}, "backbone": {"name": "resnet18"}},
    )
    assert cfg.epochs == 3
    assert cfg.data.batch_size == 16
    assert cfg.schedule.milestones == (60, 120, 160)  # still the preset's
    assert cfg.backbone["name"] == "resnet18"


def test_sets_override_presets_and_flags_override_sets(plugins):
    cfg = assemble("rotation", plugins, sets=["epochs=7", "backbone.width=0.25", "schedule.milestones=[2,4]"])
    assert cfg.epochs == 7
    assert cfg.backbone["width"] == 0.25
    assert cfg.backbone["blocks"] == 4
    assert cfg.schedule.milestones == (2, 4)
    cfg = assemble("rotation", plugins, sets=["backbone.width=0.25"], flags={"epochs": 9})
    assert cfg.epochs == 9 and cfg.backbone["width"] == 0.25
    with pytest.raises(ConfigError, match="disagree"):  # a flag never silently wins over a --set of its key
        assemble("rotation", plugins, sets=["epochs=7"], flags={"epochs": 9})


def test_preset_flag_values_win_over_file(plugins, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "paper"}))
    cfg = assemble("rotation", plugins, preset="repo", config_file=path)
    assert cfg.epochs == 200
    assert cfg.schedule.milestones == (60, 120, 160)


def test_preset_flag_recorded_over_file(plugins, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "paper"}))
    cfg = assemble("rotation", plugins, preset="repo", config_file=path)
    assert cfg.preset == "repo"


def test_preset_from_config_file(plugins, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "repo"\n')
    cfg = assemble("rotation", plugins, config_file=path)
    assert cfg.preset == "repo" and cfg.epochs == 200


def test_preset_from_set(plugins):
    cfg = assemble("rotation", plugins, sets=["preset=repo"])
    assert cfg.preset == "repo"
    assert cfg.epochs == 200


def test_unknown_preset_lists_presets(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, preset="papper")
    msg = _one_line(info)
    assert "papper" in msg
    assert "paper" in msg and "repo" in msg
    assert "did you mean 'paper'" in msg


def test_unknown_preset_from_file(plugins, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "nope"}))
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, config_file=path)
    msg = _one_line(info)
    assert "nope" in msg and "paper" in msg and "repo" in msg


def test_unknown_task_and_backbone(plugins):
    with pytest.raises(UnknownNameError) as info:
        assemble("rotaton", plugins)
    assert "did you mean 'rotation'" in _one_line(info)
    with pytest.raises(UnknownNameError) as info:
        assemble("rotation", plugins, flags={"backbone": {"name": "resnet81"}})
    assert "did you mean 'resnet18'" in _one_line(info)


# --------------------------------------------------------------------------- validation errors


def test_misspelt_backbone_key(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["backbone.widht=0.5"])
    msg = _one_line(info)
    assert "backbone.widht" in msg
    assert "did you mean 'width'" in msg


def test_bad_backbone_value(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["backbone.width=abc"])
    msg = _one_line(info)
    assert "backbone.width" in msg
    assert "abc" in msg


def test_out_of_range_value(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["backbone.width=99"])
    assert "backbone.width" in _one_line(info)
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["data.holdout=0.9"])
    assert "data.holdout" in _one_line(info)


def test_misspelt_data_key(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["data.batchsize=3"])
    msg = _one_line(info)
    assert "data.batchsize" in msg
    assert "unknown" in msg
    assert "did you mean 'batch_size'" in msg


def test_misspelt_top_level_key(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["epoch=3"])
    msg = _one_line(info)
    assert "'epoch'" in msg
    assert "did you mean 'epochs'" in msg


def test_misspelt_task_key(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["task.angle=[0,90]"])
    msg = _one_line(info)
    assert "task.angle" in msg
    assert "did you mean 'angles'" in msg


def test_invalid_task_value(plugins):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["task.angles=[0,360]"])
    assert "task.angles" in _one_line(info)


def test_config_error_is_sslkit_error():
    assert issubclass(ConfigError, SSLKitError)


# --------------------------------------------------------------------------- config files


def test_toml_config_file(plugins, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        "epochs = 12\nseed = 3\n\n[backbone]\nwidth = 0.5\nblocks = 3\n\n"
        "[data]\nbatch_size = 32\nflip = false\n\n[schedule]\nmilestones = [4, 8]\n"
    )
    cfg = assemble("rotation", plugins, config_file=path)
    assert cfg.epochs == 12 and cfg.seed == 3
    assert cfg.backbone == {"name": "nin", "blocks": 3, "width": 0.5, "in_channels": 3}
    assert cfg.data.batch_size == 32 and cfg.data.flip is False
    assert cfg.schedule.milestones == (4, 8)


def test_json_config_file(plugins, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": 6, "backbone": {"width": 0.25}, "task": {"mode": "random"}}))
    cfg = assemble("rotation", plugins, config_file=str(path))
    assert cfg.epochs == 6
    assert cfg.backbone["width"] == 0.25
    assert cfg.task == {"name": "rotation", "angles": [0.0, 90.0, 180.0, 270.0], "mode": "random"}


def test_set_overrides_config_file(plugins, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"epochs": 6, "backbone": {"width": 0.25}}))
    cfg = assemble("rotation", plugins, config_file=path, sets=["epochs=8"])
    assert cfg.epochs == 8
    assert cfg.backbone["width"] == 0.25


def test_config_file_task_name_same_as_command_is_fine(plugins, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"task": {"name": "rotation"}}))
    assert assemble("rotation", plugins, config_file=path).task["name"] == "rotation"


def test_missing_config_file(plugins, tmp_path):
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, config_file=tmp_path / "missing.toml")
    msg = _one_line(info)
    assert "missing.toml" in msg
    assert "no such file" in msg


def test_config_file_wrong_suffix(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert ".toml" in _one_line(info)


@pytest.mark.parametrize("name, text", [("bad.toml", "epochs = = 3\n[x\n"), ("bad.json", '{"epochs": 3,\n\n')])
def test_unparsable_config_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    msg = _one_line(info)
    assert name in msg and "cannot parse" in msg


def test_config_file_not_a_table(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    _one_line(info)


def test_config_names_other_task(plugins, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[task]\nname = "jigsaw"\n')
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, config_file=path)
    msg = _one_line(info)
    assert "jigsaw" in msg and "rotation" in msg
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, sets=["task.name=jigsaw"])
    _one_line(info)


def test_bad_value_in_config_file(plugins, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[data]\nbatch_size = "many"\n')
    with pytest.raises(ConfigError) as info:
        assemble("rotation", plugins, config_file=path)
    assert "data.batch_size" in _one_line(info)


def test_a_flag_and_a_set_of_the_same_key_that_disagree_are_one_line(plugins):
    with pytest.raises(ConfigError, match=r"the option for 'epochs' \(1\) and --set epochs=0 disagree"):
        assemble("rotation", plugins, sets=["epochs=0"], flags={"epochs": 1})
    cfg = assemble("rotation", plugins, sets=["epochs=3"], flags={"epochs": 3})  # agreeing is fine
    assert cfg.epochs == 3


def test_one_dotted_key_parser_for_set_flags_and_keywords():
    from sslkit.api import overrides_layer
    from sslkit.config import nested, parse_sets

    want = {"backbone": {"width": 0.25, "blocks": 3}, "optim": {"lr": 0.05}}
    assert parse_sets(["backbone.width=0.25", "backbone.blocks=3", "optim.lr=0.05"]) == want
    assert overrides_layer({"backbone.width": 0.25, "backbone": {"blocks": 3}, "optim": {"lr": 0.05}}) == want
    assert nested({"a.b": 1, "a.c": 2}) == {"a": {"b": 1, "c": 2}}
    for bad in (["a=1", "a.b=2"], ["a.b=1", "a.b.c=2"], ["a..b=1"]):
        with pytest.raises(ConfigError, match="--set"):
            parse_sets(bad)
