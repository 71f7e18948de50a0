"""Every registered backbone honours the stage contract; NIN matches the RotNet paper."""

from __future__ import annotations

import pytest
import torch

from sslkit import create_backbone
from sslkit.errors import ConfigError, UnknownNameError
from sslkit.plugins import load_plugins

BACKBONES = load_plugins().backbones.names()


@pytest.mark.parametrize("name", BACKBONES)
def test_stage_contract(name, plugins):
    backbone = create_backbone(name, plugins).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = backbone(x, backbone.stage_names)
    assert list(feats) == backbone.stage_names
    for stage in backbone.stages:
        f = feats[stage.name]
        assert f.shape == (2, stage.channels, 32 // stage.stride, 32 // stage.stride), stage
    # Default: the last stage only; asking for a shallow stage gives the same values.
    assert list(backbone(x)) == [backbone.last_stage.name]
    first = backbone.stage_names[0]
    torch.testing.assert_close(backbone(x, [first])[first], feats[first])


@pytest.mark.parametrize("name", BACKBONES)
def test_unknown_stage_suggests(name, plugins):
    backbone = create_backbone(name, plugins)
    typo = backbone.stage_names[-1] + "x"
    with pytest.raises(UnknownNameError, match="did you mean"):
        backbone(torch.randn(1, 3, 32, 32), [typo])


@pytest.mark.parametrize("name", BACKBONES)
def test_channels_last_same_result(name, plugins):
    backbone = create_backbone(name, plugins).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = backbone(x)[backbone.last_stage.name]
    cl = backbone.to(memory_format=torch.channels_last)
    out = cl(x.contiguous(memory_format=torch.channels_last))[backbone.last_stage.name]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_nin_shapes_and_parameters(plugins):
    nin = create_backbone("nin", plugins, blocks=4)
    feats = nin(torch.randn(2, 3, 32, 32), ["block1", "block2", "block3", "block4"])
    assert feats["block1"].shape == (2, 96, 16, 16)
    assert feats["block2"].shape == (2, 192, 8, 8)
    assert feats["block4"].shape == (2, 192, 8, 8)
    # 4-block RotNet has ~1.41 M parameters including its Linear(192, 4) head.
    params = sum(p.numel() for p in nin.parameters()) + 192 * 4 + 4
    assert 1.40e6 < params < 1.42e6
    assert [s.name for s in create_backbone("nin", plugins, blocks=5).stages] == [f"block{i}" for i in range(1, 6)]


def test_nin_layers_match_spec(plugins):
    nin = create_backbone("nin", plugins, blocks=3)
    convs = [m for m in nin.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [
        (5, 192),
        (1, 160),
        (1, 96),
        (5, 192),
        (1, 192),
        (1, 192),
        (3, 192),
        (1, 192),
        (1, 192),
    ]
    assert all(c.bias is None and c.stride == (1, 1) and c.padding[0] == (c.kernel_size[0] - 1) // 2 for c in convs)
    pools = [type(m).__name__ for m in nin.modules() if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))]
    assert pools == ["MaxPool2d", "AvgPool2d"]


def test_nin_width_multiplier(plugins):
    narrow = create_backbone("nin", plugins, width=0.25)
    assert [s.channels for s in narrow.stages] == [24, 48, 48, 48]
    assert narrow(torch.randn(1, 3, 32, 32))["block4"].shape == (1, 48, 8, 8)


def test_backbone_config_is_validated(plugins):
    with pytest.raises(ConfigError, match="blocks"):
        create_backbone("nin", plugins, blocks=2)
    with pytest.raises(ConfigError, match="did you mean 'width'"):
        create_backbone("nin", plugins, widht=0.5)


def test_resnet18_weights_load_into_torchvision(plugins):
    import torchvision

    ours = create_backbone("resnet18", plugins, small_stem=False).eval()
    tv = torchvision.models.resnet18(weights=None)
    tv.fc = torch.nn.Identity()
    tv.load_state_dict(ours.torchvision_state_dict(), strict=True)
    tv.eval()
    x = torch.randn(2, 3, 64, 64)
    ref = tv(x)
    out = ours(x)["layer4"].mean((2, 3))
    torch.testing.assert_close(out, ref)
