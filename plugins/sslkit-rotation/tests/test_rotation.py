"""Rotation prediction: labels, transforms and presets as in Gidaris et al. 2018."""

from __future__ import annotations

import pytest
import torch

from sslkit import create_backbone, create_task
from sslkit.config import assemble
from sslkit.plugins import load_plugins
from sslkit_rotation import rotate


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def _task(plugins, **options):
    backbone = create_backbone("nin", plugins, blocks=3, width=0.1)
    return backbone, create_task("rotation", backbone, plugins, **options)


def test_all_mode_labels_equal_rot90(plugins):
    _, task = _task(plugins)
    images = torch.randn(5, 3, 32, 32)
    inputs, targets = task.prepare(images, torch.Generator().manual_seed(0))
    assert inputs.shape == (20, 3, 32, 32) and targets.shape == (20,)
    for i in range(20):
        k = int(targets[i])
        torch.testing.assert_close(inputs[i], torch.rot90(images[i % 5], k, dims=(-2, -1)), rtol=0, atol=0)
    # Every image appears in all four rotations in the same batch.
    assert torch.bincount(targets).tolist() == [5, 5, 5, 5]


def test_random_mode_one_rotation_per_image(plugins):
    _, task = _task(plugins, mode="random")
    images = torch.randn(64, 3, 32, 32)
    inputs, targets = task.prepare(images, torch.Generator().manual_seed(0))
    assert inputs.shape == images.shape and targets.min() >= 0 and targets.max() <= 3
    for i in range(64):
        torch.testing.assert_close(inputs[i], torch.rot90(images[i], int(targets[i]), dims=(-2, -1)), rtol=0, atol=0)
    assert len(set(targets.tolist())) == 4
    again = task.prepare(images, torch.Generator().manual_seed(0))[1]
    assert torch.equal(again, targets)  # seeded: reproducible


def test_rot90_is_counter_clockwise():
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 2] = 1.0  # top right
    assert rotate(x, 90)[0, 0, 0, 0] == 1.0  # counter-clockwise: top right -> top left


def test_interpolated_angles_agree_with_exact_rotation():
    # A smooth image so bilinear interpolation is accurate away from the corners.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 33), torch.linspace(-1, 1, 33), indexing="ij")
    img = torch.stack([torch.sin(2 * xx) + yy, torch.cos(3 * yy) * xx, xx * yy])[None]
    centre = (slice(None), slice(None), slice(8, 25), slice(8, 25))
    # Rotating by 45 twice is rotating by 90 (same direction as rot90).
    twice = rotate(rotate(img, 45.0), 45.0)
    torch.testing.assert_close(twice[centre], rotate(img, 90)[centre], atol=0.05, rtol=0)
    # 89.999 degrees goes through interpolation and must match the exact 90.
    torch.testing.assert_close(rotate(img, 89.999)[centre], rotate(img, 90)[centre], atol=1e-3, rtol=0)


def test_any_angle_set(plugins):
    _, task = _task(plugins, angles=[0, 45, 90, 135, 180, 225, 270, 315])
    inputs, targets = task.prepare(torch.randn(2, 3, 32, 32), torch.Generator())
    assert inputs.shape == (16, 3, 32, 32) and targets.max() == 7
    assert task.head[-1].out_features == 8
    _, pair = _task(plugins, angles=[90, 270])
    inputs, targets = pair.prepare(torch.randn(3, 3, 32, 32), torch.Generator())
    torch.testing.assert_close(inputs[:3], torch.rot90(inputs[3:], 2, dims=(-2, -1)))


def test_bad_angle_sets_are_config_errors(plugins):
    from sslkit.errors import ConfigError

    with pytest.raises(ConfigError, match="distinct"):
        _task(plugins, angles=[0, 360])
    with pytest.raises(ConfigError, match="task.mode"):
        _task(plugins, mode="every")


def test_head_and_loss(plugins):
    backbone, task = _task(plugins)
    inputs, targets = task.prepare(torch.randn(4, 3, 32, 32), torch.Generator())
    logits = task(backbone, inputs)
    assert logits.shape == (16, 4)
    loss = task.loss(logits, targets)
    assert torch.isfinite(loss) and loss.ndim == 0
    assert isinstance(task.head[0], torch.nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize("preset,epochs,milestones", [("paper", 100, (30, 60, 80)), ("repo", 200, (60, 120, 160))])
def test_presets(plugins, preset, epochs, milestones):
    cfg = assemble("rotation", plugins, preset=preset)
    assert cfg.epochs == epochs and cfg.schedule.milestones == milestones and cfg.schedule.gamma == 0.2
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov, cfg.optim.weight_decay) == (
        "sgd",
        0.1,
        0.9,
        True,
        5e-4,
    )
    assert cfg.data.batch_size == 128
