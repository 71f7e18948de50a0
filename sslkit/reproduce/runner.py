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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CHECKPOINT, load_checkpoint
from ..config import RunConfig, assemble, deep_merge
from ..engine.rundir import resumed_config
from ..engine.trainer import METRICS, train
from ..errors import CheckpointError, ConfigError
from ..files import OutputLock, atomic_write, atomic_write_text, write_json
from ..interfaces import Arm, Callback, ProbeJob, Recipe
from ..plugins import Plugins
from ..probes.evaluation import FeatureCache
from ..probes.runner import probe_run
from ..probes.settings import ProbeSettings
from ..probes.splits import ProbeSplits, load_splits
from ..registry import FIRST_PARTY, MIX, suggest
from .table import findings, to_markdown

log = logging.getLogger(__name__)
Event = Callable[[str], None]

# --smoke: the same recipe with a tiny step budget (tests; checks that a full preset runs).
SMOKE_PRETEXT = {"epochs": 1, "data": {"subset": 96, "batch_size": 32, "holdout": 0.25}}
SMOKE_PROBE = {"epochs": 1}
SMOKE_MONITOR = {"bank": 200, "queries": 100}


@dataclass
class Trunk:
    """A pretext run the probe rows read: the recipe's one run, or one of its arms."""

    arm: str | None  # the arm's task (rows "<arm>/<key>/<layer>"); None: the recipe's one run
    run_dir: Path
    info: dict[str, Any]  # reused, epochs, history, seconds
    cache: FeatureCache = field(default_factory=dict)  # its features, extracted once for every row


def _check_task(name: str, task: str, plugins: Plugins) -> None:
    """One line naming the plugin to install when a recipe's task (or a task of its mix) is missing."""
    for part in (p for p in task.split(MIX) if p):
        if part not in plugins.tasks:
            dist = FIRST_PARTY.get(part, ("", f"the plugin that provides '{part}'"))[1]
            raise ConfigError(
                f"{name} needs the '{part}' pretext task, which no installed plugin registers; "
                f"install it (pip install {dist}) and check 'sslkit plugins'"
            )


def get_recipe(name: str, preset: str, plugins: Plugins) -> Recipe:
    """A registered reproduction's preset; one-line errors for an unknown name or preset, or a
    recipe whose pretext task (or one of its arms' tasks) no installed plugin registers."""
    presets = plugins.recipes.get(name)  # unknown: names the registered ones and the plugin to install
    if preset not in presets:
        raise ConfigError(
            f"unknown preset '{preset}'{suggest(preset, list(presets))} for {name}; presets: {', '.join(presets)}"
        )
    recipe: Recipe = presets[preset]
    for task in dict.fromkeys([recipe.task, *(arm.task for arm in recipe.arms)]):
        _check_task(name, task, plugins)
    return recipe


def _pretext(
    recipe: Recipe,
    arm: Arm,
    run_dir: Path,
    data: str,
    plugins: Plugins,
    device: str,
    smoke: bool,
    callbacks: list[Callback],
    seed: int,
    exclude_test: float,
) -> dict[str, Any]:
    """Train (or reuse, or resume) one pretext run: the recipe's overrides, then the arm's."""
    t0 = time.perf_counter()
    task_cls = plugins.tasks.get(arm.task)
    preset = recipe.task_preset if recipe.task_preset in task_cls.presets else task_cls.default_preset
    flags: dict[str, Any] = {
        "backbone": recipe.backbone,
        "data": {"name": data, "exclude_test": exclude_test},
        "device": device,
        "seed": seed,
    }
    if recipe.monitor:  # the online kNN monitor on the reproduction's own labelled data
        flags["monitor"] = {"knn": {**recipe.monitor, "data": data, **(SMOKE_MONITOR if smoke else {})}}
    overrides = deep_merge(recipe.pretext, arm.pretext)
    flags = deep_merge(deep_merge(overrides, SMOKE_PRETEXT) if smoke else overrides, flags)
    if smoke:
        flags["backbone"] = {**flags["backbone"], "width": 0.1}
    cfg = assemble(arm.task, plugins, preset=preset, flags=flags)
    if (run_dir / CHECKPOINT).exists():
        state = load_checkpoint(run_dir)
        _check_same_run(state, cfg, run_dir)
        if state["epoch"] >= cfg.epochs:  # its time as it trained then: the epochs' steps and evaluations
            seconds = sum(float(r.get("seconds", 0.0)) + float(r.get("eval_seconds", 0.0)) for r in state["history"])
            return {"reused": True, "epochs": state["epoch"], "history": state["history"], "seconds": seconds}
        result = train(cfg, run_dir, plugins=plugins, resume=True, callbacks=callbacks)
    else:
        result = train(cfg, run_dir, plugins=plugins, callbacks=callbacks)
    seconds = time.perf_counter() - t0
    return {"reused": False, "epochs": len(result.history), "history": result.history, "seconds": seconds}


def _check_same_run(state: dict[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    """A pretext run in ``out`` is reused or continued only if the recipe would train it the same
    way (a changed seed, task option or schedule would otherwise be reported under the new ones)."""
    stored = state["config"]
    if cfg.precision == "auto":  # the run wrote what "auto" became on its machine
        cfg = cfg.model_copy(update={"precision": stored.get("precision", cfg.precision)})
    try:
        resumed_config(stored, cfg)
    except CheckpointError as exc:
        why = str(exc).removeprefix("--resume: ").split("; ", 1)[0]
        raise CheckpointError(
            f"the pretext run '{run_dir}' was trained with other settings ({why}); "
            "delete that folder to train it again, or choose another --out"
        ) from None


def _trunks(recipe: Recipe, out: Path, data: str, say: Event, **run: Any) -> list[Trunk]:
    """Every pretext run of the recipe: ``pretext/`` (one run), or ``pretext/<task>/`` per arm."""
    if not recipe.arms:
        say(f"pretext: {recipe.task} on {data}")
        info = _pretext(recipe, Arm(recipe.task), out / "pretext", data, **run)
        return [Trunk(None, out / "pretext", info)]
    trunks = []
    for arm in recipe.arms:
        say(f"pretext: {arm.task} on {data}")
        run_dir = out / "pretext" / arm.task
        trunks.append(Trunk(arm.task, run_dir, _pretext(recipe, arm, run_dir, data, **run)))
    return trunks


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
        base = ProbeSettings(
            device=device, seed=seed, max_steps=2 if smoke else None, labels_per_class=10 if smoke else None
        )
        # A folder has no test split: the probes carve one, and pretraining must not see it.
        exclude = base.test_fraction if test_data is None and data not in plugins.datasets else 0.0
        run = dict(plugins=plugins, device=device, smoke=smoke, callbacks=list(callbacks or []), seed=seed)
        trunks = _trunks(recipe, out, data, say, exclude_test=exclude, **run)
        shown = next((t for t in trunks if t.arm == recipe.task), trunks[0])  # a mix's curves show each task
        curves = _curves(shown.run_dir, out)
        splits = _splits(data, test_data, plugins, base, smoke)
        random_cache: FeatureCache = {}  # one random trunk for every row: extracted once
        rows = []
        for job in recipe.jobs:
            for trunk in trunks if job.trunk == "pretext" else trunks[:1]:
                arm = trunk.arm if job.trunk == "pretext" else None
                cache = trunk.cache if job.trunk == "pretext" else random_cache if job.trunk == "random" else None
                where = (trunk.run_dir, arm)
                rows += _job_rows(job, recipe, where, splits, plugins, base, smoke, out, say, cache)
        table = {
            "reproduction": recipe.name,
            "preset": recipe.preset,
            "task": recipe.task,
            "data": data,
            "smoke": smoke,
            "source": recipe.source,
            **_pretext_fields(recipe, trunks, out),
            # a reused pretext run counts the time it took when it trained, not the ~0 s of reading it
            "total_seconds": round(
                time.perf_counter() - t0 + sum(t.info["seconds"] for t in trunks if t.info["reused"]), 1
            ),
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


def _heldout_accs(task: str, record: dict[str, Any]) -> dict[str, float]:
    """{task: held-out pretext accuracy} of an epoch record (each task of a mix)."""
    accs = {}
    for key, value in record.items():
        part, _, last = key.rpartition("/")
        if last == "heldout_acc":
            accs[part or task] = value
    return accs


def _pretext_fields(recipe: Recipe, trunks: list[Trunk], out: Path) -> dict[str, Any]:
    """The table's description of its pretext run, or of each run of a recipe with arms."""
    first = trunks[0].info
    if not recipe.arms:
        return {
            "pretext_run": str(trunks[0].run_dir),
            "pretext_epochs": first["epochs"],
            "pretext_heldout_acc": (first["history"][-1].get("heldout_acc") if first["history"] else None),
            "pretext_seconds": round(first["seconds"], 1),  # a reused run's: its epochs' steps and evaluations
        }
    arms = [
        {
            "task": t.arm,
            "run": str(t.run_dir),
            "epochs": t.info["epochs"],
            "heldout_acc": _heldout_accs(str(t.arm), t.info["history"][-1] if t.info["history"] else {}),
            "seconds": round(t.info["seconds"], 1),
        }
        for t in trunks
    ]
    return {
        "pretext_run": str(out / "pretext"),
        "pretext_epochs": max(a["epochs"] for a in arms),
        "pretext_heldout_acc": None,
        "pretext_seconds": round(sum(a["seconds"] for a in arms), 1),
        "arms": arms,
    }


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
    where: tuple[Path, str | None],
    splits: ProbeSplits,
    plugins: Plugins,
    base: ProbeSettings,
    smoke: bool,
    out: Path,
    say: Event,
    cache: FeatureCache | None,
) -> list[dict[str, Any]]:
    """One probe job's table rows (one per layer) on the run ``where`` = (run folder, arm or
    None); a job finished earlier is reused, never recomputed."""
    run_dir, arm = where
    key = f"{arm}/{job.key}" if arm else job.key
    path = out / "probes" / f"{key.replace('/', '-')}.json"
    if path.is_file():
        report = json.loads(path.read_text())
        say(f"{key}: reused {path}")
    else:
        say(f"{key}: {job.label}")
        t = time.perf_counter()
        report = _run_job(job, recipe, run_dir, splits, plugins, base, smoke, cache)
        report["seconds"] = time.perf_counter() - t
        write_json(path, report)
    rows = []
    for layer in job.layers:
        result = report["layers"][layer]
        row = {
            "row": f"{key}/{layer}",
            "label": (f"{arm}: " if arm else "") + f"{job.label}, {layer}",
            "ours": round(100 * result["test_acc"], 2),
            "val": round(100 * result["val"]["acc"], 2) if "val" in result else None,
            "paper": recipe.paper.get(f"{key}/{layer}"),
            "seconds": round(report.get("seconds", 0.0), 1),
            "features": report["features"],
            "mode": _mode(job, report["settings"].get("tiles", 1), report["settings"].get("flip", False)),
        }
        rows.append({**row, "arm": arm} if arm else row)
    return rows


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
