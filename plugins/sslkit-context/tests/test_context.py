"""Context prediction: geometry, labels, countermeasures and the siamese model (Doersch et al. 2015)."""

from __future__ import annotations

import pytest
import torch

from sslkit import Backbone, Config, Stage, create_backbone, create_task, hookimpl
from sslkit.config import assemble
from sslkit.errors import ConfigError
from sslkit.plugins import load_plugins
from sslkit_context import OFFSETS, Geometry, auto_geometry, colour_drop, project_out_green_magenta, sample_patches
from sslkit_context.patches import CENTRE_CELL, OUTER_CELLS, resolve_geometry
from sslkit_context.shortcuts import grayscale, patch_normalize, random_resample


def _coords(b: int, size: int) -> torch.Tensor:
    """Images whose channels are the pixel's x and y: the content encodes the position."""
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xx, yy, xx + yy])[None].repeat(b, 1, 1, 1)


def _plain_task(plugins, **options):
    """No countermeasures: patches are exact crops of the image."""
    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    opts = {"grayscale": 0.0, "resample": 0.0, "chromatic": "none", "patch_norm": "none", **options}
    return backbone, create_task("context", backbone, plugins, **opts)


def test_label_table_matches_spec():
    # Doersch et al., ICCV 2015, sec. 3 (fig. 2): (dx, dy) of patch 2, y downwards.
    assert OFFSETS == ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))
    assert [((c % 3) - 1, (c // 3) - 1) for c in OUTER_CELLS] == list(OFFSETS) and CENTRE_CELL == 4


@pytest.mark.parametrize(
    "size,options", [(32, {}), (96, {}), (32, {"upsample": 64}), (40, {"patch_size": 8, "jitter": 2, "gap": 2})]
)
def test_every_label_is_the_true_offset(plugins, size, options):
    _, task = _plain_task(plugins, **options)
    images = _coords(16, size)
    (centre, outer), targets = task.prepare(images, torch.Generator().manual_seed(1))
    b = images.shape[0]
    assert centre.shape[0] == b and outer.shape[0] == 8 * b and targets.shape == (8 * b,)
    assert torch.bincount(targets).tolist() == [b] * 8
    # The mean x and y of a patch's pixels locate it. Along an axis, the outer patch is in the
    # centre's row/column when the two overlap (jitter < patch), else on the side of the sign.
    cx, cy = centre[:, 0].mean((1, 2)).repeat(8), centre[:, 1].mean((1, 2)).repeat(8)
    ox, oy = outer[:, 0].mean((1, 2)), outer[:, 1].mean((1, 2))
    span = (centre[:, 0].amax((1, 2)) - centre[:, 0].amin((1, 2))).repeat(8)  # (p - 1) px in image units

    def offset(d):
        return (torch.sign(d) * (d.abs() > span)).long()

    true = torch.tensor(
        [OFFSETS.index((int(dx), int(dy))) for dx, dy in zip(offset(ox - cx), offset(oy - cy), strict=True)]
    )
    assert torch.equal(true, targets)
    assert set((ox - cx).abs()[targets == 1].tolist()) != {0.0}  # the jitter moved patches


def test_patches_are_exact_crops_inside_their_cells_and_never_overlap():
    geom = Geometry(patch=5, jitter=2, gap=1)  # cell 9, extent 29
    images = _coords(64, 32)
    s = sample_patches(images, geom, torch.Generator().manual_seed(0))
    y, x = s.corners[..., 0], s.corners[..., 1]
    # Crops: a patch's first pixel holds its corner coordinates.
    assert torch.equal(s.centre[:, 0, 0, 0].long(), x[:, CENTRE_CELL]) and torch.equal(
        s.centre[:, 1, 0, 0].long(), y[:, CENTRE_CELL]
    )
    k_of = {c: k for k, c in enumerate(OUTER_CELLS)}
    for cell, k in k_of.items():
        patch = s.outer[k * 64 : (k + 1) * 64]
        assert torch.equal(patch[:, 0, 0, 0].long(), x[:, cell]) and torch.equal(patch[:, 1, 0, 0].long(), y[:, cell])
    # Jitter within bounds: corner minus the cell's nominal offset = grid origin + jitter in 0..2j.
    grid_y = y - (torch.arange(9) // 3) * geom.stride
    grid_x = x - (torch.arange(9) % 3) * geom.stride
    jy, jx = grid_y - grid_y.min(1, keepdim=True).values, grid_x - grid_x.min(1, keepdim=True).values
    assert jy.max() <= 2 * geom.jitter and jx.max() <= 2 * geom.jitter
    assert jy.max() == 2 * geom.jitter and jx.max() == 2 * geom.jitter  # the whole range is used
    assert y.min() >= 0 and x.min() >= 0 and (y.max() + geom.patch) <= 32 and (x.max() + geom.patch) <= 32
    # Neighbours (same row or column) are at least `gap` px apart: never overlapping.
    for a in range(9):
        for b in range(9):
            if a // 3 == b // 3 and b % 3 == a % 3 + 1:
                assert (x[:, b] - (x[:, a] + geom.patch)).min() >= geom.gap
            if a % 3 == b % 3 and b // 3 == a // 3 + 1:
                assert (y[:, b] - (y[:, a] + geom.patch)).min() >= geom.gap


@pytest.mark.parametrize("size,expected", [(32, (8, 1, 1)), (96, (24, 2, 6)), (255, (64, 4, 19))])
def test_auto_geometry(size, expected):
    g = auto_geometry(size)
    assert (g.patch, g.jitter, g.gap) == expected and g.extent <= size and g.gap > 0


def test_geometry_that_does_not_fit_is_a_config_error(plugins):
    with pytest.raises(ConfigError, match="does not fit"):
        resolve_geometry(32, 12, 2, 4)
    _, task = _plain_task(plugins, patch_size=16)
    with pytest.raises(ConfigError, match="upsample"):
        task.prepare(torch.randn(2, 3, 32, 32), torch.Generator())


def test_projection_removes_green_magenta_from_every_pixel():
    x = torch.randn(6, 3, 9, 9) * 3
    y = project_out_green_magenta(x)
    a = torch.tensor([-1.0, 2.0, -1.0])
    assert torch.einsum("c,nchw->nhw", a, y).abs().max() < 1e-5
    # Only that axis goes: the orthogonal part of every pixel is unchanged, and it is idempotent.
    residual = x - y
    assert torch.allclose(
        torch.linalg.cross(residual.permute(0, 2, 3, 1), a.expand(6, 9, 9, 3)), torch.zeros(6, 9, 9, 3), atol=1e-5
    )
    torch.testing.assert_close(project_out_green_magenta(y), y)


def test_colour_drop_keeps_one_channel_and_faint_noise():
    x = torch.randn(400, 3, 16, 16) * torch.tensor([1.0, 5.0, 0.2])[None, :, None, None]
    y = colour_drop(x, torch.Generator().manual_seed(0))
    stds = y.flatten(2).std(2)  # [N, 3]
    kept = (y == x).flatten(2).all(2)  # [N, 3]
    assert torch.equal(kept.sum(1), torch.ones(400, dtype=torch.long))  # exactly one channel kept
    assert set(kept.float().argmax(1).tolist()) == {0, 1, 2}  # a random one
    ratio = stds[~kept].view(400, 2) / stds[kept][:, None]
    assert ratio.min() > 0.007 and ratio.max() < 0.013 and abs(ratio.mean() - 0.01) < 5e-4


def test_grayscale_resample_and_patch_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, 8, 8)
    gray = grayscale(x, 0.66, g)
    is_gray = (gray[:, 0] == gray[:, 1]).flatten(1).all(1) & (gray[:, 1] == gray[:, 2]).flatten(1).all(1)
    assert 0.55 < is_gray.float().mean() < 0.77
    assert torch.equal(gray[~is_gray], x[~is_gray])
    smooth = random_resample(x, 0.33, 0.4, g)
    changed = (smooth != x).flatten(1).any(1)
    assert 0.23 < changed.float().mean() < 0.43 and smooth.shape == x.shape
    # Down-and-up sampling removes high frequencies: the changed patches have less energy.
    assert smooth[changed].var() < x[changed].var()
    n = patch_normalize(x * 7 + 3, "rms")
    assert n.mean((2, 3)).abs().max() < 1e-5 and torch.allclose(n.pow(2).mean((1, 2, 3)), torch.ones(300), atol=1e-3)


def test_countermeasures_on_by_default_and_seeded(plugins):
    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    task = create_task("context", backbone, plugins)
    images = torch.randn(8, 3, 32, 32)
    (c1, o1), t1 = task.prepare(images, torch.Generator().manual_seed(3))
    (c2, o2), _ = task.prepare(images, torch.Generator().manual_seed(3))
    assert torch.equal(c1, c2) and torch.equal(o1, o2)
    both = torch.cat([c1, o1])
    a = torch.tensor([-1.0, 2.0, -1.0])
    assert torch.einsum("c,nchw->nhw", a, both).abs().max() < 1e-4  # projection is the default
    assert torch.allclose(both.pow(2).mean((1, 2, 3)), torch.ones(len(both)), atol=0.01)  # unit RMS (eps aside)


def test_siamese_forward_shares_weights_and_centres(plugins):
    backbone, task = _plain_task(plugins)
    backbone.eval(), task.eval()
    (centre, outer), targets = task.prepare(torch.randn(4, 3, 32, 32), torch.Generator().manual_seed(0))
    shared = task(backbone, (centre, outer))
    repeated = task(backbone, (centre.repeat(8, 1, 1, 1), outer))  # share_centre=False layout
    assert shared.shape == (32, 8)
    torch.testing.assert_close(shared, repeated)
    head = task.head
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert head[0].in_features == 2 * backbone.last_stage.channels and head[-1].out_features == 8
    _, unshared = _plain_task(plugins, share_centre=False)
    (c, o), _ = unshared.prepare(torch.randn(4, 3, 32, 32), torch.Generator())
    assert c.shape == o.shape == (32, 3, 8, 8)


def test_embed_grid_keeps_the_layout_inside_each_patch(plugins):
    backbone, task = _plain_task(plugins, embed_grid=2)
    backbone.eval(), task.eval()
    assert task.head[0].in_features == 2 * 4 * backbone.last_stage.channels
    (centre, outer), _ = task.prepare(torch.randn(4, 3, 32, 32), torch.Generator().manual_seed(0))
    assert task(backbone, (centre, outer)).shape == (32, 8)
    # The 2x2 grid of each patch's last-stage map, whose mean is the global average pool.
    stage = backbone.last_stage.name
    maps = backbone(centre, [stage])[stage]
    grid = task.pool(maps)
    assert grid.shape[-2:] == (2, 2)
    torch.testing.assert_close(grid.mean((2, 3)), maps.mean((2, 3)))


def test_preview_pairs(plugins):
    _, task = _plain_task(plugins)
    inputs, targets = task.prepare(_coords(2, 32), torch.Generator())
    items = task.preview(inputs, targets)
    assert len(items) == 16 and all(len(imgs) == 2 for imgs, _ in items)
    assert [cap for _, cap in items[:8]] == [
        "0 up-left",
        "1 up",
        "2 up-right",
        "3 left",
        "4 right",
        "5 down-left",
        "6 down",
        "7 down-right",
    ]


class _TinyConfig(Config):
    channels: int = 6


class _ThirdPartyBackbone(Backbone):
    """A backbone no part of sslkit knows: one conv and a pool."""

    Config = _TinyConfig

    def __init__(self, config: _TinyConfig) -> None:
        super().__init__(config)
        self.blocks["features"] = torch.nn.Sequential(
            torch.nn.Conv2d(3, config.channels, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)
        )
        self.stages = (Stage("features", config.channels, 2),)


class _ThirdPartyPlugin:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("throwaway", _ThirdPartyBackbone)


def test_trains_with_a_third_party_backbone(tmp_path):
    from sslkit.engine.trainer import train

    plugins = load_plugins(extra=[_ThirdPartyPlugin()])
    cfg = assemble(
        "context",
        plugins,
        sets=["backbone.name=throwaway", "data.subset=256", "data.batch_size=64", "data.holdout=0.25"],
        flags={"epochs": 2, "device": "cpu"},
    )
    assert cfg.data.crop_padding == 0  # the default preset: no zero-padded border to locate patches by
    result = train(cfg, tmp_path / "run", plugins=plugins)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) and 0 <= r["heldout_acc"] <= 1 for r in result.history)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert "blocks.features.0.weight" in state["backbone"]
    # The trained backbone is an ordinary whole-image encoder.
    enc = _ThirdPartyBackbone(_TinyConfig())
    enc.load_state_dict(state["backbone"])
    assert enc(torch.randn(1, 3, 32, 32))["features"].shape == (1, 6, 16, 16)


@pytest.mark.parametrize("name", ["nin", "resnet18", "alexnet"])
def test_any_registered_backbone(plugins, name):
    options = {"nin": {"blocks": 3, "width": 0.1}, "resnet18": {}, "alexnet": {"width": 0.1}}[name]
    backbone = create_backbone(name, plugins, **options)
    task = create_task("context", backbone, plugins, upsample=64 if name == "alexnet" else None)
    inputs, targets = task.prepare(torch.randn(2, 3, 32, 32), torch.Generator())
    loss = task.loss(task(backbone, inputs), targets)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in backbone.parameters() if p.requires_grad)


def test_presets(plugins):
    default = assemble("context", plugins)
    assert default.preset == "default" and default.data.crop_padding == 0
    stl = assemble("context", plugins, preset="stl")
    assert (stl.task["patch_size"], stl.task["jitter"], stl.task["gap"], stl.task["grayscale"]) == (24, 4, 0, 0.66)
    assert resolve_geometry(96, 24, 4, 0).cell == 32  # 3x3 cells of 32 px fill a 96 px image
    assert assemble("context", plugins, preset="upsampled").task["upsample"] == 64
    with pytest.raises(ConfigError, match="task.chromatic"):
        assemble("context", plugins, sets=["task.chromatic=purple"])
