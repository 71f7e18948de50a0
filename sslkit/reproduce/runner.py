"""Run a reproduction recipe: pretext training, then every probe row, then the comparison table.

Each stage writes into the output folder (``pretext/`` is a normal run folder, every probe row
a ``probes/<row>.json``), and a finished stage is reused when the command is run again, so an
interrupted reproduction continues where it stopped and a finished checkpoint is never retrained.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CHECKPOINT, load_checkpoint
from ..config import assemble, deep_merge
from ..engine.trainer import METRICS, train
from ..errors import ConfigError
from ..files import OutputLock, atomic_write, atomic_write_text, write_json
from ..interfaces import Callback, ProbeJob, Recipe
from ..plugins import Plugins
from ..probes.evaluation import FeatureCache
from ..probes.runner import probe_run
from ..probes.settings import ProbeSettings
from ..probes.splits import ProbeSplits, load_splits
from ..registry import FIRST_PARTY, suggest

log = logging.getLogger(__name__)
Event = Callable[[str], None]

# --smoke: the same recipe with a tiny step budget (tests; checks that a full preset runs).
SMOKE_PRETEXT = {"epochs": 1, "data": {"subset": 96, "batch_size": 32, "holdout": 0.25}}
SMOKE_PROBE = {"epochs": 1}
SMOKE_MONITOR = {"bank": 200, "queries": 100}


def get_recipe(name: str, preset: str, plugins: Plugins) -> Recipe:
    """A registered reproduction's preset; one-line errors for an unknown name or preset, or a
    recipe whose pretext task no installed plugin registers."""
    presets = plugins.recipes.get(name)  # unknown: names the registered ones and the plugin to install
    if preset not in presets:
        raise ConfigError(
            f"unknown preset '{preset}'{suggest(preset, list(presets))} for {name}; presets: {', '.join(presets)}"
        )
    recipe: Recipe = presets[preset]
    if recipe.task not in plugins.tasks:
        dist = FIRST_PARTY.get(recipe.task, ("", f"the plugin that provides '{recipe.task}'"))[1]
        raise ConfigError(
            f"{name} needs the '{recipe.task}' pretext task, which no installed plugin registers; "
            f"install it (pip install {dist}) and check 'sslkit plugins'"
        )
    return recipe


def _pretext(
    recipe: Recipe,
    data: str,
    out: Path,
    plugins: Plugins,
    device: str,
    smoke: bool,
    callbacks: list[Callback],
    seed: int,
    exclude_test: float,
) -> tuple[Path, dict[str, Any]]:
    run_dir = out / "pretext"
    task_cls = plugins.tasks.get(recipe.task)
    preset = recipe.task_preset if recipe.task_preset in task_cls.presets else task_cls.default_preset
    flags: dict[str, Any] = {
        "backbone": recipe.backbone,
        "data": {"name": data, "exclude_test": exclude_test},
        "device": device,
        "seed": seed,
    }
    if recipe.monitor:  # the online kNN monitor on the reproduction's own labelled data
        flags["monitor"] = {"knn": {**recipe.monitor, "data": data, **(SMOKE_MONITOR if smoke else {})}}
    flags = deep_merge(deep_merge(recipe.pretext, SMOKE_PRETEXT) if smoke else recipe.pretext, flags)
    if smoke:
        flags["backbone"] = {**flags["backbone"], "width": 0.1}
    cfg = assemble(recipe.task, plugins, preset=preset, flags=flags)
    if (run_dir / CHECKPOINT).exists():
        state = load_checkpoint(run_dir)
        if state["epoch"] >= state["config"]["epochs"]:
            return run_dir, {"reused": True, "epochs": state["epoch"], "history": state["history"]}
        result = train(cfg, run_dir, plugins=plugins, resume=True, callbacks=callbacks)
    else:
        result = train(cfg, run_dir, plugins=plugins, callbacks=callbacks)
    return run_dir, {"reused": False, "epochs": len(result.history), "history": result.history}


def reproduce(
    name: str,
    preset: str,
    out: str | Path,
    plugins: Plugins,
    *,
    data: str | None = None,
    test_data: str | None = None,
    device: str = "auto",
    seed: int = 0,
    smoke: bool = False,
    callbacks: list[Callback] | None = None,
    on_event: Event | None = None,
) -> dict[str, Any]:
    """Run recipe ``name``/``preset`` into ``out``; returns the table (also written as
    ``reproduce.json`` and ``reproduce.md``)."""
    recipe = get_recipe(name, preset, plugins)
    return run_recipe(
        recipe,
        out,
        plugins,
        data=data,
        test_data=test_data,
        device=device,
        seed=seed,
        smoke=smoke,
        callbacks=callbacks,
        on_event=on_event,
    )


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    plugins: Plugins,
    *,
    data: str | None = None,
    test_data: str | None = None,
    device: str = "auto",
    seed: int = 0,
    smoke: bool = False,
    callbacks: list[Callback] | None = None,
    on_event: Event | None = None,
) -> dict[str, Any]:
    """Run ``recipe`` (a registered one, or a variant of it: benchmarks/quick_sweep.py) into ``out``,
    holding the output folder's lock."""
    say = on_event or (lambda msg: log.info("%s", msg))
    out = Path(out)
    data = data or ("sample" if smoke else recipe.default_data)
    with OutputLock(out, "reproduction"):
        t0 = time.perf_counter()
        say(f"pretext: {recipe.task} on {data}")
        base = ProbeSettings(
            device=device, seed=seed, max_steps=2 if smoke else None, labels_per_class=10 if smoke else None
        )
        # A folder has no test split: the probes carve one, and pretraining must not see it.
        exclude = base.test_fraction if test_data is None and data not in plugins.datasets else 0.0
        run_dir, pretext = _pretext(recipe, data, out, plugins, device, smoke, list(callbacks or []), seed, exclude)
        pretext_s = time.perf_counter() - t0
        curves = _curves(run_dir, out)
        splits = _splits(data, test_data, plugins, base, smoke)
        caches: dict[str, FeatureCache] = {"pretext": {}, "random": {}}  # one trunk each: extracted once
        rows = [
            row
            for job in recipe.jobs
            for row in _job_rows(job, recipe, run_dir, splits, plugins, base, smoke, out, say, caches.get(job.trunk))
        ]
        table = {
            "reproduction": recipe.name,
            "preset": recipe.preset,
            "task": recipe.task,
            "data": data,
            "smoke": smoke,
            "source": recipe.source,
            "pretext_run": str(run_dir),
            "pretext_epochs": pretext["epochs"],
            "pretext_heldout_acc": (pretext["history"][-1].get("heldout_acc") if pretext["history"] else None),
            "pretext_seconds": round(pretext_s, 1),
            "total_seconds": round(time.perf_counter() - t0, 1),
            "test": splits.notes["test"],
            "validation": splits.notes["validation"],
            "selection": "last epoch; the test split is never used for selection",
            "rows": rows,
            "findings": findings(rows),
            "curves": curves,
        }
        write_json(out / "reproduce.json", table)
        atomic_write_text(out / "reproduce.md", to_markdown(table))
    return table


def _splits(data: str, test_data: str | None, plugins: Plugins, base: ProbeSettings, smoke: bool) -> ProbeSplits:
    """The labelled splits every row shares (the same carved test split for all)."""
    splits = load_splits(data, test_data, plugins, base)
    if smoke:  # evaluation sets trimmed too: the smoke run checks plumbing, not accuracy
        splits.val = splits.val.select(torch.arange(min(len(splits.val), 100))) if splits.val is not None else None
        splits.test = splits.test.select(torch.arange(min(len(splits.test), 200)))
    return splits


def _job_rows(
    job: ProbeJob,
    recipe: Recipe,
    run_dir: Path,
    splits: ProbeSplits,
    plugins: Plugins,
    base: ProbeSettings,
    smoke: bool,
    out: Path,
    say: Event,
    cache: FeatureCache | None,
) -> list[dict[str, Any]]:
    """One probe job's table rows (one per layer); a job finished earlier is reused, never recomputed."""
    path = out / "probes" / f"{job.key.replace('/', '-')}.json"
    if path.is_file():
        report = json.loads(path.read_text())
        say(f"{job.key}: reused {path}")
    else:
        say(f"{job.key}: {job.label}")
        t = time.perf_counter()
        report = _run_job(job, recipe, run_dir, splits, plugins, base, smoke, cache)
        report["seconds"] = time.perf_counter() - t
        write_json(path, report)
    return [
        {
            "row": f"{job.key}/{layer}",
            "label": f"{job.label}, {layer}",
            "ours": round(100 * report["layers"][layer]["test_acc"], 2),
            "val": round(100 * report["layers"][layer]["val"]["acc"], 2) if "val" in report["layers"][layer] else None,
            "paper": recipe.paper.get(f"{job.key}/{layer}"),
            "seconds": round(report.get("seconds", 0.0), 1),
            "features": report["features"],
            "mode": _mode(job, report["settings"].get("tiles", 1), report["settings"].get("flip", False)),
        }
        for layer in job.layers
    ]


def _curves(run_dir: Path, out: Path) -> str | None:
    """The pretext run's loss and accuracy per epoch as ``OUT/curves.png`` (None without epochs)."""
    from ..viz.pictures import curves_figure, read_metrics

    rows = read_metrics(run_dir) if (run_dir / METRICS).is_file() else []
    if not rows:
        return None
    figure = curves_figure(rows)
    atomic_write(out / "curves.png", lambda tmp: figure.save(tmp, format="PNG"))
    return "curves.png"


def _run_job(
    job: ProbeJob,
    recipe: Recipe,
    run_dir: Path,
    splits: ProbeSplits,
    plugins: Plugins,
    base: ProbeSettings,
    smoke: bool,
    cache: FeatureCache | None = None,
) -> dict[str, Any]:
    trains = plugins.probes.get(job.probe).trains  # kNN has no epochs to cut
    options = {**job.options, **(SMOKE_PROBE if smoke and trains else {})}
    extra: dict[str, Any] = {}
    if job.trunk == "supervised" and "supervised_epoch_size" in recipe.probe_settings:
        extra["epoch_size"] = recipe.probe_settings["supervised_epoch_size"]
    settings = base.model_copy(
        update={
            "probe": job.probe,
            "options": options,
            "layers": job.layers,
            "finetune": job.finetune,
            "augment": job.augment,
            "tiles": _tiles(job, recipe),
            "flip": _flip(job, recipe, trains),
            **extra,
        }
    )
    if job.trunk != "supervised":  # the pretext run's trunk, or a random init of its architecture
        return probe_run(
            run_dir, settings, plugins, splits=splits, random_init=job.trunk == "random", feature_cache=cache
        )
    sup = recipe.supervised_backbone
    return probe_run(
        None,
        settings,
        plugins,
        splits=splits,
        backbone=sup["name"],
        backbone_options={**{k: v for k, v in sup.items() if k != "name"}, **({"width": 0.1} if smoke else {})},
    )


def _tiles(job: ProbeJob, recipe: Recipe) -> int:
    """The recipe's tiling for probes on the pretext and random trunks (one yardstick for both);
    the supervised baseline trains on whole images."""
    return 1 if job.trunk == "supervised" else recipe.tiles


def _flip(job: ProbeJob, recipe: Recipe, trains: bool) -> bool:
    """Whether a job's cached features get the mirrored training images too (trained probes only)."""
    return recipe.cached_flip and trains and not (job.augment or job.finetune)


def _mode(job: ProbeJob, tiles: int, flip: bool) -> str:
    """How a row's probe saw its inputs, from the settings its report recorded."""
    trunk = "fine-tuned" if job.finetune else "frozen"
    aug = "crop+flip" if job.augment or job.finetune else ("cached, flip" if flip else "cached, no aug")
    return f"{trunk}, {aug}" + (f", {tiles}x{tiles} tiles" if tiles > 1 else "")


def findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The papers' qualitative claims, checked on our numbers: pretext features beat random-init
    features (every probe row that has a random-init twin), and block2 beats the last block on
    the non-linear probe (RotNet's Table 1)."""
    ours = {r["row"]: r["ours"] for r in rows}
    checks = []
    for row, a in ours.items():
        b = ours.get(f"random/{row}")
        if row.startswith("random/") or b is None:
            continue
        probe, layer = row.rsplit("/", 1)
        checks.append(
            {
                "claim": f"pretext features beat random-init features ({probe} probe, {layer})",
                "holds": a > b,
                "margin": round(a - b, 2),
            }
        )
    blocks = sorted((k for k in ours if k.startswith("mlp/block")), key=lambda k: int(k.rsplit("block", 1)[1]))
    if len(blocks) >= 3:
        last = blocks[-1]
        checks.append(
            {
                "claim": f"block2 beats the last block ({last.split('/')[1]}) on the non-linear probe",
                "holds": ours["mlp/block2"] > ours[last],
                "margin": round(ours["mlp/block2"] - ours[last], 2),
            }
        )
    return checks


def data_label(data: str) -> str:
    """A registered dataset's name, or a folder's last two parts (``.../cifar10-20k/train``): the
    page shows what the data was, not where it lay on the machine that ran it."""
    if "/" not in data and "\\" not in data:
        return data
    parts = Path(data).parts
    return "a folder of images, `.../" + "/".join(parts[-2:]) + "`"


def to_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"# {table['reproduction']} ({table['preset']} preset)",
        "",
        f"Pretext: `{table['task']}` on {data_label(table['data'])}, {table['pretext_epochs']} epochs, "
        "held-out pretext accuracy "
        + (f"{100 * table['pretext_heldout_acc']:.1f}%" if table["pretext_heldout_acc"] is not None else "n/a")
        + f" ({table['pretext_seconds']:.0f} s). Total {table['total_seconds']:.0f} s.",
        "",
        f"Test: {table['test']}. Validation: {table['validation']}. Reported: {table['selection']}.",
        "",
        "| row | ours (test %) | val % | paper % | probe input | s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in table["rows"]:
        val = "" if r["val"] is None else f"{r['val']:.2f}"
        paper = "" if r["paper"] is None else f"{r['paper']:.2f}"
        lines.append(f"| {r['label']} | {r['ours']:.2f} | {val} | {paper} | {r['mode']} | {r['seconds']:.0f} |")
    lines += ["", f"Paper numbers: {table['source']}.", ""]
    if table.get("curves"):
        lines += [f"![training curves per epoch: loss, accuracy, online kNN, embedding std]({table['curves']})", ""]
    for f in table["findings"]:
        lines.append(f"- {'holds' if f['holds'] else 'DOES NOT hold'}: {f['claim']} (margin {f['margin']:+.2f} points)")
    return "\n".join(lines) + "\n"
