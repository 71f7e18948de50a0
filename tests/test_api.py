"""The Python API (sslkit.train / load / list_* / create_backbone) and the one run loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sslkit
from sslkit.cli import main
from sslkit.errors import ConfigError, DataError, UnknownNameError

TINY = {"backbone.width": 0.1, "backbone.blocks": 3, "data.subset": 64, "data.batch_size": 32, "data.holdout": 0.25}


@pytest.fixture(scope="module")
def run(tmp_path_factory, plugins):
    """One epoch of rotation on 64 sample images through sslkit.train (a few seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSLKIT_DATA", str(tmp_path_factory.getbasetemp() / "sslkit-data"))
        out = tmp_path_factory.mktemp("api") / "run"
        return sslkit.train(
            "rotation", out, backbone="nin", data="sample", epochs=1, device="cpu", plugins=plugins, **TINY
        )


def test_listing_and_factory(plugins):
    assert {"rotation", "context"} <= set(sslkit.list_tasks(plugins=plugins))
    assert sslkit.list_tasks("rot*", plugins=plugins) == ["rotation"]
    assert {"nin", "resnet18", "alexnet"} <= set(sslkit.list_backbones(plugins=plugins))
    if "timm/" in plugins.backbones.families():  # a family shows as such, as in `sslkit plugins`
        assert "timm/*" in sslkit.list_backbones(plugins=plugins)
        assert "timm/resnet18" in sslkit.list_backbones("timm/resnet1*", plugins=plugins)
    assert sslkit.list_probes(plugins=plugins) == sorted(["conv", "knn", "linear", "mlp"])
    assert {"csv", "tensorboard", "wandb"} <= set(sslkit.list_loggers(plugins=plugins))
    net = sslkit.create_backbone("nin", blocks=3, width=0.25)
    out = net(torch.randn(2, 3, 32, 32), ["block1", "block3"])
    assert {k: tuple(v.shape) for k, v in out.items()} == {"block1": (2, 24, 16, 16), "block3": (2, 48, 8, 8)}
    with pytest.raises(ConfigError, match="backbone.widht"):
        sslkit.create_backbone("nin", widht=0.5)


def test_overrides_layer_merges_dotted_keys_and_dicts():
    from sslkit.api import overrides_layer

    layer = overrides_layer({"epochs": 1, "backbone.width": 0.25, "optim": {"lr": 0.05}, "optim.momentum": 0.5})
    assert layer == {"epochs": 1, "backbone": {"width": 0.25}, "optim": {"lr": 0.05, "momentum": 0.5}}


def test_train_returns_the_run_as_configured(run):
    assert run.config["epochs"] == 1 and run.config["backbone"] == {
        "name": "nin",
        "blocks": 3,
        "width": 0.1,
        "in_channels": 3,
    }
    assert run.config["data"]["subset"] == 64 and run.config["task"]["name"] == "rotation"
    assert len(run.history) == 1 and 0.0 <= run.history[0]["heldout_acc"] <= 1.0
    assert not run.backbone.training and run.backbone.stage_names == ["block1", "block2", "block3"]
    assert run.input_shape == (3, 32, 32) and len(run.mean) == 3
    assert json.loads((run.folder / "config.json").read_text()) == run.config


def test_a_run_shows_itself_briefly_in_a_notebook(run):
    """repr(run) was 4,934 characters (the whole module); a notebook now gets a small table."""
    assert len(repr(run)) < 600 and "backbone=" not in repr(run)
    page = run._repr_html_()
    assert page.startswith("<table>") and "rotation" in page and "heldout_acc" in page and "1 of 1" in page


def test_train_errors_are_one_line(tmp_path, plugins):
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'"):
        sslkit.train("rotation", tmp_path / "x", plugins=plugins, **{"optim.lrr": 0.1})
    cfg = sslkit.RunConfig(task={"name": "rotation"}, backbone={"name": "nin"})
    with pytest.raises(ConfigError, match="the config is complete"):
        sslkit.train(cfg, tmp_path / "y", epochs=1, plugins=plugins)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_load_is_the_one_loader(run, plugins):
    from sslkit.export import onnx, torch_weights
    from sslkit.probes.trunk import load_trunk

    loaded = sslkit.load(run.folder, plugins=plugins)
    assert onnx.load_run is torch_weights.load_run is sslkit.run.load_run
    assert isinstance(loaded, sslkit.Run) and isinstance(loaded, sslkit.run.LoadedRun)
    assert loaded.history == run.history and loaded.config == run.config and loaded.epoch == 1
    trunk = load_trunk(run.folder, plugins)
    state = torch.load(run.folder / "checkpoint.pt", weights_only=True)["backbone"]
    for key, value in state.items():
        assert torch.equal(loaded.backbone.state_dict()[key], value)
        assert torch.equal(trunk.backbone.state_dict()[key], value)
    assert trunk.description.startswith("pretrained:") and trunk.mean == loaded.mean


def test_embed_accepts_every_image_kind_alike(run, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"{i}.png")
    as_uint8 = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    c = {s.name: s.channels for s in run.backbone.stages}
    want = run.embed(as_uint8)
    assert want.shape == (2, c["block3"]) and want.dtype == torch.float32
    torch.testing.assert_close(run.embed(as_uint8.float() / 255), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(run.embed([tmp_path / "0.png", str(tmp_path / "1.png")]), want)
    torch.testing.assert_close(run.embed(tmp_path), want)  # a folder: sorted files
    torch.testing.assert_close(run.embed([Image.fromarray(p) for p in pixels]), want)
    torch.testing.assert_close(run.embed(as_uint8[0]), want[:1])  # one [C, H, W] image
    # The normalisation is the run's: the same as the training loop's.
    x = (as_uint8.float() / 255 - torch.tensor(run.mean).view(1, 3, 1, 1)) / torch.tensor(run.std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(run.backbone(x)["block3"].mean((2, 3)), want, rtol=1e-5, atol=1e-5)
    assert run.embed(as_uint8, layer="block1", pool="none").shape == (2, c["block1"], 16, 16)
    assert run.embed(as_uint8, layer="block2", pool="flatten").shape == (2, c["block2"] * 8 * 8)


def test_embed_errors(run, tmp_path):
    with pytest.raises(DataError, match="expected"):
        run.embed(torch.zeros(2, 1, 32, 32))
    with pytest.raises(DataError, match="no such image"):
        run.embed(tmp_path / "missing.png")
    with pytest.raises(UnknownNameError, match="block9"):
        run.embed(torch.zeros(1, 3, 32, 32), layer="block9")


def test_export_and_probe_from_the_run(run, tmp_path):
    result = run.export(tmp_path / "b.pt", format="torch")
    assert result.tensors == len(torch.load(tmp_path / "b.pt", weights_only=True))
    with pytest.raises(UnknownNameError, match="unknown export format 'pickle'.*known: onnx, safetensors, torch"):
        run.export(tmp_path / "b.x", format="pickle")
    with pytest.raises(ConfigError, match="--format torch has no option 'layer'; its options: native, torchvision"):
        run.export(tmp_path / "b.x", format="torch", layer="block2")
    report = run.probe(probe="knn", layers=["block2"], labels_per_class=20, device="cpu")
    assert set(report["layers"]) == {"block2"} and 0.0 <= report["layers"]["block2"]["test_acc"] <= 1.0
    assert report["run"] == str(run.folder)


def test_first_party_task_missing_names_the_package():
    only_core = sslkit.load_plugins(extra=["sslkit.backbones.plugin"], entry_points=False)  # as if not installed
    with pytest.raises(UnknownNameError, match=r"sslkit-rotation package: pip install sslkit-rotation"):
        only_core.tasks.get("rotation")


def test_cli_train_piped_progress_and_next_steps(tmp_path, capsys):
    """Output that is not a terminal gets plain step lines, then the commands to run next."""
    out = tmp_path / "run"
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
                str(out),
                *sets,
                "--set",
                "data.subset=224",
                "--set",
                "data.batch_size=16",
            ]
        )
    err = capsys.readouterr().err
    assert exit_.value.code in (0, None), err
    # 168 training images / 16 per step = 10 steps; the loop reports every 5th step.
    assert "epoch 1/1 step 5/10  loss" in err and "epoch 1/1 step 10/10  loss" in err
    assert f"sslkit probe {out}" in err and f"sslkit export {out}" in err and f"sslkit viz curves {out}" in err
    assert "\x1b[" not in err  # no live bar, no control characters in a log file


def test_cli_choices_match_the_config():
    """Fixed-value options are choices in --help; the CLI's list is the config's."""
    import typing

    from sslkit.cli.train_cmd import Precision
    from sslkit.config import RunConfig

    assert typing.get_args(Precision) == typing.get_args(RunConfig.model_fields["precision"].annotation)


def test_train_arguments_of_the_wrong_kind_are_one_line_before_anything_is_written(tmp_path, plugins):
    tiny = {"epochs": 1, "backbone.width": 0.1, "backbone.blocks": 3, "data.subset": 32, "data.batch_size": 16}
    for resume in ("yes", 0, 1):
        with pytest.raises(ConfigError, match=rf"resume={resume!r}: use False"):
            sslkit.train("rotation", tmp_path / "r", plugins=plugins, resume=resume, **tiny)
    with pytest.raises(ConfigError, match="callbacks\\[0\\] is a object, not an sslkit.Callback"):
        sslkit.train("rotation", tmp_path / "c", plugins=plugins, callbacks=[object()], **tiny)
    with pytest.raises(UnknownNameError, match="unknown logger 'nonsense'"):  # one name, not its letters
        sslkit.train("rotation", tmp_path / "l", plugins=plugins, loggers="nonsense", **tiny)
    assert not any((tmp_path / d).exists() for d in "rcl")
    with pytest.raises(ConfigError, match="backbone name must be a non-empty string"):
        sslkit.create_backbone(None, plugins=plugins)  # type: ignore[arg-type]


def test_embed_skips_unreadable_files_with_a_warning_and_names_every_row(run, tmp_path, caplog):
    """As ``sslkit embed`` does: a bad file is skipped and named, the rest are embedded."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 80, 20, 200)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    features, names = run.embed(folder, with_names=True)
    assert features.shape[0] == 3 and [n.rsplit("/", 1)[1] for n in names] == ["0.png", "1.png", "2.png"]
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)


def test_loading_an_unfinished_run_says_so(tmp_path, plugins, caplog):
    """Probing or exporting a run that is still training reads an intermediate checkpoint: not silently."""
    from sslkit.checkpoint import load_checkpoint, save_checkpoint

    run = sslkit.train(
        "rotation", tmp_path / "run", plugins=plugins, epochs=1, device="cpu",
        **{"backbone.blocks": 3, "backbone.width": 0.1, "data.subset": 32, "data.batch_size": 16},
    )  # fmt: skip
    state = load_checkpoint(run.folder)
    state["config"]["epochs"] = 3  # as if 2 epochs were still to come
    save_checkpoint(run.folder / "checkpoint.pt", {k: v for k, v in state.items() if k != "format"})
    caplog.clear()
    sslkit.load(run.folder, plugins=plugins)
    assert any("unfinished run (1 of 3 epochs" in r.getMessage() for r in caplog.records)
