"""``sslkit viz``: PNGs of the right size that are not blank."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sslkit.cli import main
from sslkit.viz.pictures import attention_maps, filters_figure
from sslkit.viz.render import colormap


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from sslkit.config import assemble
    from sslkit.engine.trainer import train
    from sslkit.plugins import load_plugins

    plugins = load_plugins()
    path = tmp_path_factory.mktemp("viz") / "run"
    sets = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=64", "data.batch_size=32", "data.holdout=0.25"]
    train(assemble("rotation", plugins, sets=sets, flags={"epochs": 2, "device": "cpu"}), path, plugins=plugins)
    return path


def _cli(*args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return exc.value.code


def _not_blank(path, size):
    img = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert (img.shape[1], img.shape[0]) == size
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50


def test_attention_png(run, tmp_path):
    files = []
    rng = np.random.default_rng(0)
    for i in range(2):
        arr = np.zeros((32, 32, 3), np.uint8)
        arr[8 + 4 * i : 24, 10:22] = rng.integers(100, 255, 3)  # a bright square on black
        files.append(tmp_path / f"im{i}.png")
        Image.fromarray(arr).save(files[-1])
    out = tmp_path / "attention.png"
    assert _cli("viz", "attention", str(run), *map(str, files), "-o", str(out)) == 0
    # 2 rows x (image + 3 stages) of 128-px tiles, 4-px gaps, a 16-px title band.
    _not_blank(out, (4 * 132 + 4, 16 + 2 * 132 + 4))


def test_attention_map_is_the_normalised_power_sum(plugins):
    import torch

    from sslkit.factory import create_backbone

    nin = create_backbone("nin", plugins, blocks=3, width=0.1)
    x = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    maps = attention_maps(nin, x, (0.5,) * 3, (0.25,) * 3, ["block2"], (2.0,))
    m = maps["block2"]
    assert m.shape == (2, 32, 32) and float(m.min()) == 0.0 and float(m.max()) == pytest.approx(1.0)


def test_filters_and_curves_png(run, tmp_path):
    out = tmp_path / "filters.png"
    assert _cli("viz", "filters", str(run), "-o", str(out)) == 0
    _not_blank(out, (5 * 42 + 2, 4 * 42 + 2))  # 19 filters (width 0.1): a 5x4 grid of 40-px tiles
    out = tmp_path / "curves.png"
    assert _cli("viz", "curves", str(run), "-o", str(out)) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    h, w, _ = img.shape  # matplotlib's tight layout: the size follows the panels and labels
    assert 250 <= h <= 600 and 700 <= w <= 1400, img.shape
    blue = np.all(img == (31, 119, 180), axis=-1).sum()  # the training series is drawn
    assert blue > 100


def test_filters_grid_and_colormap_shapes():
    import torch

    img = filters_figure(torch.randn(8, 3, 5, 5), tile=10)
    assert img.size == (3 * 12 + 2, 3 * 12 + 2)
    c = colormap(np.linspace(0, 1, 7).reshape(1, 7))
    assert c.shape == (1, 7, 3) and tuple(c[0, 0]) == (0, 0, 64) and tuple(c[0, -1]) == (192, 0, 0)


def test_viz_errors(tmp_path):
    assert _cli("viz", "curves", str(tmp_path)) == 2
    assert _cli("viz", "filters", str(tmp_path / "none")) == 2
