"""timm models as backbones: ``timm/<model>`` through the registry's family lookup (no weights
downloaded: pretrained=False, tiny 32 px inputs)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import sslkit
from sslkit.cli import main
from sslkit.errors import PluginError, UnknownNameError
from sslkit.testing import check_backbone, check_task

timm = pytest.importorskip("timm")
MODEL = "timm/resnet10t"  # the smallest timm ResNet: 5 stages, 4.9 M parameters


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def _labelled_folder(root, per_class=10):
    """Three classes of 32 px pictures that differ in colour (a probe can tell them apart)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            x = torch.randint(0, 96, (32, 32, 3), generator=g, dtype=torch.uint8)
            x[..., k] += 150
            Image.fromarray(x.numpy()).save(root / name / f"{i}.png")
    return root


def test_stages_come_from_feature_info(plugins):
    backbone = sslkit.create_backbone(MODEL, plugins)
    info = timm.create_model("resnet10t", features_only=True).feature_info
    assert [(s.name, s.channels, s.stride) for s in backbone.stages] == [
        (m.replace(".", "_"), c, r)
        for m, c, r in zip(info.module_name(), info.channels(), info.reduction(), strict=True)
    ]
    out = backbone(torch.randn(2, 3, 64, 64), backbone.stage_names)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        s.name: (2, s.channels, 64 // s.stride, 64 // s.stride) for s in backbone.stages
    }
    # Same numbers as timm's own features_only model with the same weights.
    reference = timm.create_model("resnet10t", features_only=True).eval()
    reference.load_state_dict({k.split(".", 2)[2]: v for k, v in backbone.state_dict().items()})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for have, want in zip(backbone.eval()(x, backbone.stage_names).values(), reference(x), strict=True):
            torch.testing.assert_close(have, want)


def test_family_lookup_registers_nothing_per_model(plugins):
    assert all(not n.startswith("timm/") for n in plugins.backbones.names())
    assert plugins.backbones.families() == ["timm/"]
    assert "timm/resnet10t" in sslkit.list_backbones("timm/resnet1*", plugins=plugins)
    with pytest.raises(UnknownNameError, match="unknown timm model 'resnet1' \\(did you mean"):
        plugins.backbones.get("timm/resnet1")


def test_without_timm_one_line_naming_the_extra(plugins, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(PluginError, match=r'pip install "sslkit\[timm\]"') as err:
        sslkit.create_backbone(MODEL, plugins)
    assert "\n" not in str(err.value)


def test_conformance_kit(plugins):
    # shapes, determinism, channels_last, round trip, learning (ONNX: see the CLI export below)
    check_backbone(MODEL, plugins=plugins, onnx=False)
    check_task("context", backbone=MODEL, plugins=plugins, steps=4)  # siamese: patches of 8 px


def test_train_probe_export_from_the_cli(tmp_path, capsys, plugins):
    run = tmp_path / "run"
    code, _, err = _cli(
        capsys,
        "train",
        "rotation",
        "--backbone",
        MODEL,
        "--data",
        "sample",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        run,
        "--set",
        "data.subset=64",
        "--set",
        "data.batch_size=32",
    )
    assert code in (0, None), err
    assert json.loads((run / "config.json").read_text())["backbone"]["name"] == MODEL
    labelled = _labelled_folder(tmp_path / "labelled")
    for probe in ("knn", "linear", "mlp", "conv"):
        report = sslkit.load(run, plugins=plugins).probe(
            str(labelled),
            probe=probe,
            layers=["layer2"],
            device="cpu",
            **({} if probe == "knn" else {"options": {"epochs": 1}}),
        )
        assert 0.0 <= report["layers"]["layer2"]["test_acc"] <= 1.0, probe
    code, out, err = _cli(capsys, "export", run, "--layer", "layer3", "-o", tmp_path / "e.onnx")
    assert code in (0, None) and "ok" in out, err
    code, out, err = _cli(capsys, "export", run, "--format", "safetensors", "-o", tmp_path / "b.safetensors")
    assert code in (0, None), err
    loaded = sslkit.export.load_safetensors(tmp_path / "b.safetensors", plugins)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), sslkit.load(run, plugins=plugins).backbone(x))


@pytest.mark.parametrize("model", ["timm/vit_tiny_patch16_224", "timm/convnext_atto"])
def test_a_vit_and_a_convnext_train_one_tiny_epoch_at_32_px(tmp_path, plugins, model):
    """Built at the run's training size (a ViT's img_size comes from the data, recorded in the
    checkpoint's config), checked with one forward before anything is written."""
    run = sslkit.train(
        "rotation", tmp_path / "run", backbone=model, data="sample", plugins=plugins, epochs=1, device="cpu",
        progress=False, **{"data.subset": 32, "data.batch_size": 16, "data.holdout": 0.25},
    )  # fmt: skip
    assert run.history[-1]["train_loss"] > 0
    if "vit" in model:
        assert run.config["backbone"]["image_size"] == 32


def test_a_backbone_that_cannot_take_the_size_is_one_line_before_any_folder(tmp_path, plugins):
    from sslkit.errors import SSLKitError

    with pytest.raises(SSLKitError) as err:
        sslkit.train(
            "rotation", tmp_path / "run", backbone="timm/vit_tiny_patch16_224", data="sample", plugins=plugins,
            epochs=1, device="cpu", progress=False,
            **{"backbone.image_size": 224, "data.subset": 32, "data.batch_size": 16},
        )  # fmt: skip
    assert "fails on 32-px images" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_timm_export_loads_strictly_into_timm_itself(tmp_path, plugins):
    """``--native`` (alias ``--torchvision``): timm's own key names, loaded with strict=True into
    timm.create_model(name, num_classes=0), which then gives the same features."""
    from safetensors.torch import load_file

    run = sslkit.train(
        "rotation", tmp_path / "run", backbone="timm/resnet18", data="sample", plugins=plugins, epochs=1,
        device="cpu", progress=False, **{"data.subset": 32, "data.batch_size": 16, "data.holdout": 0.25},
    )  # fmt: skip
    report = run.export(tmp_path / "r18.safetensors", format="safetensors", native=True)
    model = timm.create_model("resnet18", num_classes=0)
    model.load_state_dict(load_file(str(report.path)), strict=True)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = run.backbone(x)[run.backbone.last_stage.name]
        theirs = model.forward_features(x)
    torch.testing.assert_close(ours, theirs)
    assert "timm.create_model('resnet18', num_classes=0)" in "\n".join(report.summary())
