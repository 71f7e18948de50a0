"""``sslkit reproduce``: a full preset end to end with a tiny step budget, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sslkit.errors import CheckpointError, ConfigError, UnknownNameError
from sslkit.plugins import load_plugins
from sslkit.reproduce.runner import findings, get_recipe, reproduce
from sslkit_rotation.recipes import ROTNET_PAPER


def test_paper_preset_runs_end_to_end_with_a_tiny_budget(plugins, tmp_path):
    events = []
    table = reproduce("rotnet-cifar10", "paper", tmp_path, plugins, device="cpu", smoke=True, on_event=events.append)
    rows = {r["row"]: r for r in table["rows"]}
    assert set(rows) == {
        "mlp/block1",
        "mlp/block2",
        "mlp/block3",
        "mlp/block4",
        "conv/block2",
        "knn/block2",
        "random/mlp/block2",
        "random/conv/block2",
        "random/knn/block2",
        "supervised/block3",
        "mlp-finetune/block2",
        "conv-finetune/block2",
    }
    for key, paper in ROTNET_PAPER.items():
        assert rows[key]["paper"] == paper
    assert all(0 <= r["ours"] <= 100 for r in rows.values())
    assert rows["conv/block2"]["mode"] == "frozen, crop+flip" and rows["supervised/block3"]["mode"].startswith(
        "fine-tuned"
    )
    assert (tmp_path / "pretext" / "checkpoint.pt").is_file()
    assert json.loads((tmp_path / "reproduce.json").read_text()) == table
    md = (tmp_path / "reproduce.md").read_text()
    assert "| non-linear probe (Table 1), block2 |" in md and "89.06" in md
    assert "never used for selection" in md
    assert "| kNN (k=20, cosine, temperature votes), block2 |" in md and rows["knn/block2"]["mode"] == (
        "frozen, cached, no aug"
    )
    assert table["curves"] == "curves.png" and "](curves.png)" in md  # the pretext curves, linked
    from PIL import Image

    with Image.open(tmp_path / "curves.png") as im:
        assert im.size[0] > 200 and im.size[1] > 100
    # A second run reuses every finished stage instead of retraining.
    again = reproduce("rotnet-cifar10", "paper", tmp_path, plugins, device="cpu", smoke=True, on_event=events.append)
    assert [r["ours"] for r in again["rows"]] == [r["ours"] for r in table["rows"]]
    assert sum("reused" in e for e in events) == 9
    # Its time is the one it took to train: its epochs' steps and their evaluations (precise BN,
    # held-out pass, kNN monitor), not the steps alone.
    epochs = [json.loads(line) for line in (tmp_path / "pretext" / "metrics.jsonl").read_text().splitlines()]
    steps = sum(r["seconds"] for r in epochs)
    assert again["pretext_seconds"] == round(steps + sum(r["eval_seconds"] for r in epochs), 1) > round(steps, 1)
    # Another seed into the same folder: the seed-0 pretext run is not reported as the seed-1 one.
    with pytest.raises(CheckpointError, match=r"trained with other settings \('seed' differs"):
        reproduce("rotnet-cifar10", "paper", tmp_path, plugins, device="cpu", smoke=True, seed=1)


def test_context_probes_read_both_trunks_at_the_patch_scale(plugins, tmp_path):
    """context-cifar10 probes its pretext and random-init trunks on 4 x 4 tiles of 8 px (the
    patch size it trained on), quick probes that train with mirrored features too; the
    supervised baseline trains on whole images."""
    table = reproduce("context-cifar10", "quick", tmp_path, plugins, device="cpu", smoke=True)
    modes = {r["row"]: r["mode"] for r in table["rows"]}
    assert modes["mlp/block2"] == modes["random/conv/block2"] == "frozen, cached, flip, 4x4 tiles"
    assert modes["knn/block2"] == "frozen, cached, no aug, 4x4 tiles"  # kNN trains nothing to augment
    assert modes["supervised/block3"] == "fine-tuned, crop+flip"
    for row, tiles in (("mlp", 4), ("random-knn", 4), ("supervised", 1)):
        assert json.loads((tmp_path / "probes" / f"{row}.json").read_text())["settings"]["tiles"] == tiles
    assert "4x4 tiles" in (tmp_path / "reproduce.md").read_text()


def test_findings_compare_the_paper_claims():
    rows = [
        {"row": "mlp/block1", "ours": 50.0},
        {"row": "mlp/block2", "ours": 60.0},
        {"row": "mlp/block4", "ours": 40.0},
        {"row": "random/mlp/block2", "ours": 30.0},
        {"row": "conv/block2", "ours": 55.0},
        {"row": "random/conv/block2", "ours": 56.0},
    ]
    got = {f["claim"]: (f["holds"], f["margin"]) for f in findings(rows)}
    assert got["pretext features beat random-init features (mlp probe, block2)"] == (True, 30.0)
    assert got["pretext features beat random-init features (conv probe, block2)"] == (False, -1.0)
    assert got["block2 beats the last block (block4) on the non-linear probe"] == (True, 20.0)


def test_unknown_names_and_missing_task_plugins_are_one_line_errors(plugins):
    with pytest.raises(UnknownNameError, match="did you mean 'rotnet-cifar10'"):
        get_recipe("rotnet-cifar", "quick", plugins)
    with pytest.raises(ConfigError, match="presets: paper, repo, quick"):
        get_recipe("rotnet-cifar10", "fast", plugins)
    builtins_only = load_plugins("none")  # the recipes come with their task plugins
    for name, task in (("rotnet-cifar10", "rotation"), ("context-cifar10", "context")):
        with pytest.raises(UnknownNameError, match=f"unknown reproduction '{name}'.*pip install sslkit-{task}"):
            get_recipe(name, "quick", builtins_only)


QUICK_PAGES = sorted(p.name for p in (Path(__file__).parent.parent / "docs" / "reproduce").iterdir() if p.is_dir())


@pytest.mark.parametrize("name", QUICK_PAGES)
def test_the_docs_show_the_quick_table_and_curves_as_the_command_wrote_them(plugins, name):
    """docs/reproduce/NAME/ holds reproduce.json and curves.png of a real run of
    `sslkit reproduce ... --preset quick` on the CIFAR-10 folder, and its page is exactly the
    reproduce.md that the command renders from that JSON."""
    from pathlib import Path

    from PIL import Image

    from sslkit.reproduce.runner import to_markdown

    folder = Path(__file__).parent.parent / "docs" / "reproduce" / name
    table = json.loads((folder / "reproduce.json").read_text())
    if table["reproduction"] not in plugins.recipes:  # an example plugin's page, not installed
        pytest.skip(f"the plugin of '{table['reproduction']}' is not installed")
    assert (folder / "index.md").read_text() == to_markdown(table)
    assert table["preset"] == "quick" and not table["smoke"]
    with Image.open(folder / table["curves"]) as im:
        im.verify()
    recipe = get_recipe(table["reproduction"], "quick", plugins)
    arms = [a.task for a in recipe.arms] if recipe.arms else [None]
    want = {
        f"{arm}/{j.key}/{layer}" if arm and j.trunk == "pretext" else f"{j.key}/{layer}"
        for j in recipe.jobs
        for layer in j.layers
        for arm in (arms if j.trunk == "pretext" else [None])
    }
    assert {r["row"] for r in table["rows"]} == want


def test_the_multitask_recipe_probes_each_task_and_the_mix_alike(plugins, tmp_path):
    """multitask-cifar10: rotation, context and rotation+context pretrained alike (one crop, one
    schedule), each trunk's block2 probed (non-linear, conv, kNN) beside one random init, on the
    same test split; the table checks that the mix beats each task alone."""
    events = []
    table = reproduce("multitask-cifar10", "quick", tmp_path, plugins, device="cpu", smoke=True, on_event=events.append)
    arms = ("rotation", "context", "rotation+context")
    probes = ("mlp", "conv", "knn")
    rows = {r["row"]: r for r in table["rows"]}
    assert set(rows) == {f"{a}/{p}/block2" for a in arms for p in probes} | {f"random/{p}/block2" for p in probes}
    assert [a["task"] for a in table["arms"]] == list(arms) and table["task"] == "rotation+context"
    assert set(table["arms"][2]["heldout_acc"]) == {"rotation", "context"}
    assert rows["context/mlp/block2"]["mode"] == rows["random/conv/block2"]["mode"] == "frozen, cached, flip"
    configs = [json.loads((tmp_path / "pretext" / a / "config.json").read_text()) for a in arms]
    for c in configs:
        assert c["data"]["crop_padding"] == 0 and c["schedule"] == configs[0]["schedule"]
        assert c["optim"] == configs[0]["optim"] and c["epochs"] == configs[0]["epochs"]
    assert configs[2]["task"]["context"]["resample"] == configs[1]["task"]["resample"] == 0.66
    claims = {f["claim"] for f in table["findings"]}
    assert "the mix rotation+context beats context alone (conv probe, block2)" in claims
    assert "rotation features beat random-init features (knn probe, block2)" in claims
    md = (tmp_path / "reproduce.md").read_text()
    assert "- `rotation+context`: 1 epochs, held-out pretext accuracy rotation " in md
    assert "| rotation+context: non-linear probe, block2 |" in md and "](curves.png)" in md
    again = reproduce("multitask-cifar10", "quick", tmp_path, plugins, device="cpu", smoke=True, on_event=events.append)
    assert [r["ours"] for r in again["rows"]] == [r["ours"] for r in table["rows"]]
    assert sum("reused" in e for e in events) == 12


def test_the_multitask_quick_preset_and_its_missing_plugins(plugins):
    recipe = get_recipe("multitask-cifar10", "quick", plugins)
    assert recipe.pretext["epochs"] == 2 and recipe.pretext["precision"] == "auto"
    assert recipe.backbone == {"name": "nin", "blocks": 4, "width": 0.25} and not recipe.paper
    with pytest.raises(ConfigError, match="needs the 'rotation' pretext task.*pip install sslkit-rotation"):
        get_recipe("multitask-cifar10", "quick", load_plugins("none"))
