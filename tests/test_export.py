"""ONNX and plain-weights export: every backbone at every stage, metadata, eval mode, failures."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sslkit import create_backbone
from sslkit.cli import main
from sslkit.config import assemble
from sslkit.engine.trainer import train
from sslkit.errors import CheckpointError, ExportError
from sslkit.export import export_encoder, export_onnx, export_torch
from sslkit.export.onnx import FORMAT, TOLERANCE
from sslkit.plugins import load_plugins
from sslkit.run import Encoder, default_layer, load_run

BACKBONES = load_plugins().backbones.names()
# Small but real: every stage keeps its structure, only channel counts shrink.
SMALL = {"nin": {"blocks": 3, "width": 0.1}, "alexnet": {"width": 0.1}}
TINY_RUN = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=64", "data.batch_size=32", "data.holdout=0.25"]
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
METADATA = {
    "sslkit_format",
    "input_name",
    "input_shape",
    "input_size",
    "layout",
    "channel_order",
    "input_dtype",
    "pixel_scale",
    "mean",
    "std",
    "resize",
    "preprocessing",
    "layer",
    "pool",
    "output_name",
    "output_shape",
    "dtype",
    "task",
    "backbone",
    "epoch",
    "sslkit_version",
    "torch_version",
    "opset",
    "config",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, plugins):
    """A one-epoch NIN run on 64 sample images (a few seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSLKIT_DATA", str(tmp_path_factory.getbasetemp() / "sslkit-data"))
        cfg = assemble("rotation", plugins, sets=TINY_RUN, flags={"epochs": 1, "device": "cpu"})
        out = tmp_path_factory.mktemp("run")
        train(cfg, out, plugins=plugins)
    return out


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _features(backbone, layer, pool, x):
    with torch.no_grad():
        return Encoder(backbone.eval(), layer, pool).eval()(x).numpy()


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name", BACKBONES)
def test_every_stage_round_trips(name, plugins, tmp_path):
    backbone = create_backbone(name, plugins, **SMALL.get(name, {})).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for i, stage in enumerate(backbone.stages):
        pool = ("avg", "flatten", "none")[i % 3]
        out = tmp_path / f"{stage.name}.onnx"
        result = export_encoder(backbone, out, layer=stage.name, input_shape=(3, 32, 32), mean=MEAN, std=STD, pool=pool)
        assert {c.batch for c in result.checks} == {1, 7} and result.worst.rel < TOLERANCE["float32"]
        have = _session(out).run(None, {"images": x.numpy()})[0]
        want = _features(backbone, stage.name, pool, x)
        assert have.shape == want.shape == (3, *result.output_shape)
        assert _rel(have, want) < 1e-4, (name, stage.name, pool)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s.name}.onnx" for s in backbone.stages)


def test_run_export_dynamic_batch_and_metadata(run_dir, plugins, tmp_path):
    out = tmp_path / "enc.onnx"
    result = export_onnx(run_dir, out, layer="block2", plugins=plugins)
    assert [p.name for p in tmp_path.iterdir()] == ["enc.onnx"]  # one file: no .data, no temp left
    assert result.checks[0].inputs.startswith("16 images of sample")  # verified on real images too
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 18
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(meta) >= METADATA
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert meta["sslkit_format"] == FORMAT and meta["channel_order"] == "RGB"
    assert json.loads(meta["input_shape"]) == [3, 32, 32] and json.loads(meta["input_size"]) == [32, 32]
    assert json.loads(meta["mean"]) == list(state["config"]["data"]["mean"])
    assert json.loads(meta["std"]) == list(state["config"]["data"]["std"])
    assert json.loads(meta["config"]) == state["config"]
    assert (meta["layer"], meta["pool"], meta["task"], meta["backbone"]) == ("block2", "avg", "rotation", "nin")
    assert json.loads(meta["output_shape"]) == [19]  # NIN width 0.1: max(8, round(192 * 0.1))

    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    backbone.load_state_dict(state["backbone"])
    session = _session(out)
    for batch in (1, 7):
        x = torch.randn(batch, 3, 32, 32)
        have = session.run(None, {"images": x.numpy()})[0]
        assert have.shape == (batch, 19)
        assert _rel(have, _features(backbone, "block2", "avg", x)) < 1e-4


def test_default_layer_is_probe_best_else_last(run_dir, plugins, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert default_layer(load_run(run, plugins)) == "block3"
    (run / "probe.json").write_text(json.dumps({"best_layer": "block1"}))
    assert default_layer(load_run(run, plugins)) == "block1"
    assert default_layer(load_run(run / "checkpoint.pt", plugins)) == "block3"  # a file: no run folder
    (run / "probe.json").write_text(json.dumps({"best_layer": "conv9"}))
    with pytest.raises(CheckpointError, match="conv9"):
        export_onnx(run, tmp_path / "c.onnx", plugins=plugins)


def test_batchnorm_left_in_train_mode_exports_eval(plugins, tmp_path):
    backbone = create_backbone("nin", plugins, **SMALL["nin"])
    with torch.no_grad():  # running statistics far from any one batch's
        for _ in range(3):
            backbone(torch.randn(8, 3, 32, 32) * 3 + 1)
    backbone.train()
    export_encoder(backbone, tmp_path / "e.onnx", layer="block3", input_shape=(3, 32, 32), mean=MEAN, std=STD)
    assert backbone.training  # the caller's module is not touched
    x = torch.randn(4, 3, 32, 32)
    have = _session(tmp_path / "e.onnx").run(None, {"images": x.numpy()})[0]
    with torch.no_grad():  # copies: a train-mode forward would update the running statistics
        train_mode = Encoder(copy.deepcopy(backbone), "block3").train()(x).numpy()
    assert _rel(have, _features(copy.deepcopy(backbone), "block3", "avg", x)) < 1e-4
    assert _rel(have, train_mode) > 1e-2


def test_failed_verification_leaves_nothing(plugins, tmp_path):
    backbone = create_backbone("nin", plugins, **SMALL["nin"])
    out = tmp_path / "enc.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportError, match="verification failed"):
        # A negative tolerance fails on any error: the failure path without a broken exporter.
        export_encoder(backbone, out, layer="block1", input_shape=(3, 32, 32), mean=MEAN, std=STD, tolerance=-1.0)
    assert out.read_bytes() == b"previous export" and [p.name for p in tmp_path.iterdir()] == ["enc.onnx"]


def test_fp16_export(run_dir, plugins, tmp_path):
    result = export_onnx(run_dir, tmp_path / "h.onnx", fp16=True, pool="none", plugins=plugins)
    assert result.dtype == "float16" and result.worst.rel < TOLERANCE["float16"]
    model = onnx.load(str(tmp_path / "h.onnx"))
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # consumers feed float32


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_cli_export_and_errors(run_dir, tmp_path, capsys):
    code, out, _ = _cli(capsys, "export", run_dir, "--layer", "block1", "--pool", "flatten", "-o", tmp_path / "e.onnx")
    assert code == 0 and "relative" in out and (tmp_path / "e.onnx").is_file()
    code, _, err = _cli(capsys, "export", run_dir, "--layer", "block7", "-o", tmp_path / "x.onnx")
    assert code == 2 and err.startswith("error: unknown stage 'block7'") and err.count("\n") == 1
    code, _, err = _cli(capsys, "export", tmp_path / "nope", "-o", tmp_path / "x.onnx")
    assert code == 2 and "no checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_torch_weights_load_strict_with_same_features(run_dir, plugins, tmp_path, capsys):
    code, out, _ = _cli(capsys, "export", run_dir, "--format", "torch", "-o", tmp_path / "backbone.pt")
    assert code == 0 and "strict=True" in out
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    fresh = create_backbone("nin", plugins, blocks=3, width=0.1)
    fresh.load_state_dict(state, strict=True)
    trained = create_backbone("nin", plugins, blocks=3, width=0.1)
    trained.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["backbone"])
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        fresh.eval()(x, fresh.stage_names), trained.eval()(x, trained.stage_names), rtol=0, atol=0
    )
    with pytest.raises(ExportError, match="no torchvision or timm equivalent"):
        export_torch(run_dir, tmp_path / "x.pt", torchvision=True, plugins=plugins)


def test_torchvision_weights_load_into_torchvision(plugins, tmp_path):
    """A resnet18 run exported with --torchvision loads into torchvision's model (stem swapped)."""
    import torchvision

    from sslkit.checkpoint import save_checkpoint

    cfg = assemble(
        "rotation", plugins, sets=["backbone.name=resnet18", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]"]
    )
    backbone = create_backbone("resnet18", plugins)
    with torch.no_grad():
        backbone(torch.randn(4, 3, 32, 32))  # non-default BatchNorm statistics
    save_checkpoint(
        tmp_path / "run" / "checkpoint.pt",
        {
            "config": cfg.model_dump(mode="json"),
            "epoch": 1,
            "data": {"shape": [3, 32, 32]},
            "backbone": backbone.state_dict(),
        },
    )
    result = export_torch(tmp_path / "run", tmp_path / "tv.pt", torchvision=True, plugins=plugins)
    assert "model.maxpool = torch.nn.Identity()" in result.snippet()
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = torch.nn.Identity()
    missing, unexpected = net.load_state_dict(torch.load(tmp_path / "tv.pt", weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    net.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = backbone.eval()(x)["layer4"].mean((2, 3))
        torch.testing.assert_close(net.eval()(x), want, rtol=1e-5, atol=1e-5)
