"""``sslkit export --format safetensors``: weights plus the run's description, strict-loadable."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import sslkit
from sslkit.checkpoint import save_checkpoint
from sslkit.cli import main
from sslkit.config import assemble
from sslkit.errors import ExportError
from sslkit.export import export_safetensors, load_safetensors


def _fake_run(folder, plugins, backbone_sets, name, **options):
    """A checkpoint as training writes it, with non-default weights and BatchNorm statistics."""
    cfg = assemble("rotation", plugins, sets=[*backbone_sets, "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]"])
    torch.manual_seed(1)
    backbone = sslkit.create_backbone(name, plugins, **options)
    with torch.no_grad():
        backbone(torch.randn(4, 3, 32, 32))  # BatchNorm running statistics move away from 0/1
    save_checkpoint(
        folder / "checkpoint.pt",
        {
            "config": cfg.model_dump(mode="json"),
            "epoch": 3,
            "history": [],
            "data": {"shape": [3, 32, 32]},
            "backbone": backbone.state_dict(),
        },
    )
    return backbone.eval()


def test_cli_export_loads_strict_into_the_same_backbone(tmp_path, plugins, capsys):
    trained = _fake_run(
        tmp_path / "run", plugins, ["backbone.blocks=3", "backbone.width=0.1"], "nin", blocks=3, width=0.1
    )
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "run"), "--format", "safetensors"])
    out = capsys.readouterr().out
    path = tmp_path / "run" / "backbone.safetensors"
    assert exit_.value.code in (0, None) and "load_safetensors" in out and path.is_file()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["backbone"]) == {"name": "nin", "blocks": 3, "width": 0.1, "in_channels": 3}
    assert json.loads(meta["mean"]) == [0.5, 0.5, 0.5] and meta["task"] == "rotation" and meta["epoch"] == "3"
    assert [s[0] for s in json.loads(meta["stages"])] == ["block1", "block2", "block3"]
    # By hand, as the metadata says: the architecture from create_backbone, the weights strict.
    fresh = sslkit.create_backbone(
        "nin", plugins, **{k: v for k, v in json.loads(meta["backbone"]).items() if k != "name"}
    )
    fresh.load_state_dict(load_file(str(path)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = trained(x, trained.stage_names)
        torch.testing.assert_close(fresh.eval()(x, fresh.stage_names), want, rtol=0, atol=0)
        torch.testing.assert_close(load_safetensors(path, plugins)(x, trained.stage_names), want, rtol=0, atol=0)
    # The training checkpoint itself still loads safely.
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 3


def test_torchvision_resnet18_loads_the_file(tmp_path, plugins):
    import torchvision

    trained = _fake_run(tmp_path / "run", plugins, ["backbone.name=resnet18"], "resnet18")
    result = export_safetensors(tmp_path / "run", tmp_path / "tv.safetensors", torchvision=True, plugins=plugins)
    assert "torchvision.models.resnet18()" in result.snippet()
    net = torchvision.models.resnet18()
    net.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)  # sslkit's small_stem
    net.maxpool = torch.nn.Identity()
    missing, unexpected = net.load_state_dict(load_file(str(tmp_path / "tv.safetensors")), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    net.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), trained(x)["layer4"].mean((2, 3)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ExportError, match="torchvision key names"):
        load_safetensors(tmp_path / "tv.safetensors", plugins)


def test_errors(tmp_path, plugins, capsys):
    _fake_run(tmp_path / "run", plugins, ["backbone.blocks=3", "backbone.width=0.1"], "nin", blocks=3, width=0.1)
    with pytest.raises(ExportError, match="no torchvision or timm equivalent"):
        export_safetensors(tmp_path / "run", tmp_path / "x.safetensors", torchvision=True, plugins=plugins)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ExportError, match="cannot read"):
        load_safetensors(tmp_path / "junk.safetensors", plugins)
    capsys.readouterr()  # the direct calls above warned that the fake run is unfinished
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "run"), "--format", "safetensors", "--pool", "flatten"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "has no option 'pool'; its options: native, torchvision" in err
