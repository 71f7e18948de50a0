"""Tests of the jigsaw plugin: sslkit's conformance checks plus the paper's specifics.

Only sslkit's public testing kit (``sslkit.testing`` and its pytest fixtures) and this package
are used, as any third-party plugin would.
"""

from __future__ import annotations

import pytest
import torch

from sslkit.testing import check_task
from sslkit_jigsaw import cut_tiles, hamming_permutations, normalize_tiles, tile_geometry
from sslkit_jigsaw.permutations import hamming_stats
from sslkit_jigsaw.task import JigsawConfig, JigsawPuzzle


def test_conformance_on_nin(sslkit_plugins, sslkit_device):
    report = check_task("jigsaw", plugins=sslkit_plugins, device=sslkit_device, options={"permutations": 24})
    assert report.losses[-1] < report.losses[0]


def test_conformance_on_large_images(sslkit_plugins):
    # 96-px images are tiled at their own size (no upsampling): 32-px cells, 24-px tiles.
    check_task(
        "jigsaw",
        plugins=sslkit_plugins,
        image_size=96,
        batch=2,
        steps=6,
        options={"permutations": 8, "tile_dim": 16, "hidden": 32},
    )


def test_conformance_from_the_class_itself():
    check_task(JigsawPuzzle, options={"permutations": 4, "grayscale": 0.0, "normalize_tiles": False})


def test_permutation_set_is_deterministic_distinct_and_far_apart():
    a = hamming_permutations(100, seed=0)
    assert a.shape == (100, 9) and a.dtype == torch.int64
    assert torch.equal(a, hamming_permutations(100, seed=0))
    assert not torch.equal(a, hamming_permutations(100, seed=1))
    assert len({tuple(p) for p in a.tolist()}) == 100
    assert all(sorted(p) == list(range(9)) for p in a.tolist())
    average, minimum = hamming_stats(a)
    # Random permutation sets average 8 (9 - 1 expected fixed points); greedy selection beats it.
    random_set = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(i)) for i in range(100)])
    assert average > hamming_stats(random_set)[0]
    assert minimum >= 2
    # The minimum criterion guarantees a larger minimum distance between any two labels.
    assert hamming_stats(hamming_permutations(100, criterion="minimum"))[1] > minimum


def test_greedy_selection_step_maximises_total_distance():
    perms = hamming_permutations(5, seed=3)
    chosen = perms[:4]
    # The 5th choice has the largest total Hamming distance to the first four among all of 9!.
    best = int((perms[4][None, :] != chosen).sum())
    for candidate in (torch.randperm(9, generator=torch.Generator().manual_seed(s)) for s in range(200)):
        if not any(torch.equal(candidate, c) for c in chosen):
            assert int((candidate[None, :] != chosen).sum()) <= best


def test_geometry():
    assert tile_geometry(32, 64, 0.75) == (64, 21, 16)  # CIFAR: upsampled
    assert tile_geometry(255, 64, 64 / 85) == (255, 85, 64)  # the paper's 255 crop
    assert tile_geometry(32, 0, 0.75) == (32, 10, 8)  # never resize
    with pytest.raises(ValueError, match="min_size"):
        tile_geometry(2, 0, 0.75)


def test_tiles_come_from_their_cells():
    # Pixel values encode (row, col), so every tile can be traced back to where it was cut.
    s, cell, tile = 30, 10, 6
    rows = torch.arange(s).view(s, 1).expand(s, s)
    cols = torch.arange(s).view(1, s).expand(s, s)
    images = torch.stack([rows, cols]).float()[None].repeat(5, 1, 1, 1)  # [5, 2, 30, 30]
    tiles = cut_tiles(images, cell, tile, torch.Generator().manual_seed(0))
    assert tiles.shape == (5, 9, 2, tile, tile)
    for k in range(9):
        top, left = tiles[:, k, 0, 0, 0], tiles[:, k, 1, 0, 0]
        assert ((top // cell) == k // 3).all() and ((left // cell) == k % 3).all()
        assert ((top % cell) <= cell - tile).all()
        # each tile is a contiguous block
        assert torch.equal(tiles[:, k, 0, :, 0] - top[:, None], torch.arange(tile).float().expand(5, tile))
    jitter = tiles[:, :, 0, 0, 0] % cell
    assert len(set(jitter.flatten().tolist())) > 1  # positions really are random


def test_labels_index_the_permutation_applied():
    config = JigsawConfig(permutations=10, grayscale=0.0, normalize_tiles=False, min_size=0, tile_ratio=1.0)
    task = JigsawPuzzle(config, _tiny_backbone())
    # 30x30 images whose cells are constant and numbered 0..8: tiles reveal their origin.
    cells = torch.arange(9.0).view(1, 1, 3, 3)
    images = cells.repeat_interleave(10, dim=2).repeat_interleave(10, dim=3).repeat(8, 3, 1, 1)
    tiles, labels = task.prepare(images, torch.Generator().manual_seed(1))
    assert tiles.shape == (8 * 9, 3, 10, 10) and labels.shape == (8,)
    seen = tiles[:, 0, 0, 0].view(8, 9).long()
    assert torch.equal(seen, task.permutation_set[labels])


def test_normalisation_and_grayscale():
    x = torch.randn(4, 9, 3, 8, 8) * 5 + 3
    y = normalize_tiles(x)
    torch.testing.assert_close(y.mean(dim=(-2, -1)), torch.zeros(4, 9, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(-2, -1), unbiased=False), torch.ones(4, 9, 3), atol=1e-4, rtol=0)
    task = JigsawPuzzle(JigsawConfig(permutations=4, grayscale=1.0), _tiny_backbone())
    tiles, _ = task.prepare(torch.randn(2, 3, 32, 32), torch.Generator())
    assert tiles.shape == (18, 3, 16, 16)  # upsampled to 64: 16-px tiles
    torch.testing.assert_close(tiles[:, 0], tiles[:, 1])  # all channels equal: grayscale


def test_one_backbone_call_for_all_tiles():
    backbone = _tiny_backbone()
    calls = []
    backbone.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    task = JigsawPuzzle(JigsawConfig(permutations=6), backbone)
    tiles, labels = task.prepare(torch.randn(3, 3, 32, 32), torch.Generator())
    logits = task(backbone, tiles)
    assert logits.shape == (3, 6) and calls == [27]


def test_bad_options_are_one_line_config_errors(sslkit_plugins):
    from sslkit import SSLKitError

    with pytest.raises(SSLKitError, match="task.permutations"):  # a one-line config error
        check_task("jigsaw", plugins=sslkit_plugins, options={"permutations": 1})


def _tiny_backbone():
    from sslkit import create_backbone
    from sslkit.testing import SMALL_NIN

    return create_backbone("nin", **SMALL_NIN)


def test_the_plugin_registers_a_reproduction_that_runs(tmp_path, capsys):
    """`sslkit reproduce jigsaw-cifar10 --preset quick` (smoke size): the recipe registered by this
    plugin runs through sslkit's reproduction runner like a first-party one."""
    import json

    from sslkit.cli import main

    args = ["reproduce", "jigsaw-cifar10", "--preset", "quick", "--data", "sample", "--smoke"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--device", "cpu", "--out", str(tmp_path)])
    assert done.value.code == 0, capsys.readouterr().err
    table = json.loads((tmp_path / "reproduce.json").read_text())
    assert table["task"] == "jigsaw" and table["smoke"]
    rows = {r["row"] for r in table["rows"]}
    assert {"mlp/block2", "conv/block2", "knn/block2", "random/knn/block2"} <= rows
    assert all(0.0 <= r["ours"] <= 100.0 for r in table["rows"])
