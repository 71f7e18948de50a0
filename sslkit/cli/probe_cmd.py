"""``sslkit probe RUN``: train and evaluate a probe on stages of a trained (or random) trunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from .completion import complete_probes

Precision = Literal["auto", "fp32", "bf16", "fp16"]  # typer shows the choices and rejects others


def print_report(report: dict[str, Any], console: Any) -> None:
    """The rich table of a probe report: per layer, last-epoch val/test accuracy, then per class."""
    from rich.table import Table

    d = report["data"]
    console.print(f"[bold]{report['probe']}[/] probe on {report['trunk']}; {report['features']}")
    console.print(f"train {d['train_images']} images; validation: {d.get('validation')}; test: {d['test']}")
    if "labels" in d:
        console.print(f"labels: {d['labels']}")
    table = Table(title="probe accuracy (last epoch; test never used for selection)")
    for col in ("layer", "features", "params", "val acc", "best val (epoch)", "test acc"):
        table.add_column(col, justify="left" if col in ("layer", "features") else "right")
    for layer, r in report["layers"].items():
        best = f"{r['best_val_acc']:.2%} ({r['best_val_epoch']})" if "best_val_acc" in r else "-"
        val = f"{r['val']['acc']:.2%}" if "val" in r else "-"
        mark = " *" if layer == report["best_layer"] else ""
        table.add_row(
            layer + mark,
            "x".join(map(str, r["feature_shape"])),
            f"{r['probe_parameters']:,}",
            val,
            best,
            f"{r['test_acc']:.2%}",
        )
    console.print(table)
    layer = report["best_layer"] or next(iter(report["layers"]))
    r = report["layers"][layer]
    per = Table(title=f"{layer}: per-class test accuracy and confusion (rows: true, columns: predicted)")
    per.add_column("class")
    per.add_column("acc", justify="right")
    classes = list(r["per_class"])
    for i, _ in enumerate(classes):
        per.add_column(str(i), justify="right")
    for i, c in enumerate(classes):
        per.add_row(f"{i} {c}", f"{r['per_class'][c]:.1%}", *map(str, r["confusion"][i]))
    console.print(per)
    if report["best_layer"]:
        console.print(f"best layer (validation): {report['best_layer']}")


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe_command(
        ctx: typer.Context,
        run: Path | None = typer.Argument(
            None, help="Run folder (or checkpoint) of 'sslkit train'; optional with --random-init --backbone."
        ),
        layer: list[str] = typer.Option([], "--layer", "-l", help="Stage to probe (repeatable) [default: the last]."),
        layers: str | None = typer.Option(
            None, "--layers", help="'all' (every stage, Table 1) or a comma-separated list."
        ),
        probe: str = typer.Option(
            "mlp", "--probe", "-p", autocompletion=complete_probes, help="linear, mlp, conv, knn or a plugin's probe."
        ),
        data: str | None = typer.Option(
            None,
            "--data",
            "-d",
            help="Labelled training data: dataset name or folder of class sub-folders [default: the run's own data].",
        ),
        test_data: str | None = typer.Option(
            None,
            "--test-data",
            help="Labelled test data [default: the dataset's test split, else a carved seeded split].",
        ),
        sets: list[str] = typer.Option(
            [], "--set", "-s", help="Probe options: --set epochs=10 --set k=50 (repeatable)."
        ),
        finetune: bool = typer.Option(False, "--finetune", help="Train the trunk too, at lr * finetune_lr_scale."),
        augment: bool = typer.Option(
            False,
            "--augment/--no-augment",
            help="Crop + flip per batch (the paper's protocol; slower: no feature cache).",
        ),
        labels_per_class: int | None = typer.Option(
            None, "--labels-per-class", "-k", help="Keep the first K training images per class (Figure 5b)."
        ),
        epoch_size: int | None = typer.Option(
            None, "--epoch-size", help="Samples per epoch [default: the full training split, also with -k]."
        ),
        val_fraction: float = typer.Option(
            0.1, "--val-fraction", help="Validation split carved from the training data."
        ),
        select: str = typer.Option(
            "last", "--select", help="last: report the last epoch; val: the best validation epoch."
        ),
        flip: bool = typer.Option(
            False,
            "--flip",
            help="Cached features: also of the mirrored training images, one of the two drawn per sample "
            "(flip augmentation for one more trunk pass over the training split).",
        ),
        precision: Precision = typer.Option(
            "auto", "--precision", help="Autocast of the cached feature pass [default: the run's training precision]."
        ),
        tiles: int = typer.Option(
            1,
            "--tiles",
            help="Read each image as TILES x TILES patches, each through the trunk on its own, maps stitched "
            "(trunks pretrained on patches: context prediction).",
        ),
        random_init: bool = typer.Option(
            False, "--random-init", help="Randomly initialised trunk (the paper's baseline)."
        ),
        backbone: str | None = typer.Option(
            None, "--backbone", "-b", help="Backbone for --random-init without a run [default: the run's]."
        ),
        backbone_sets: list[str] = typer.Option(
            [], "--backbone-set", help="Backbone option for --random-init: blocks=3 (repeatable)."
        ),
        out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the report [default: the run folder]."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
        seed: int = typer.Option(0, "--seed", help="Seeds the splits, the random init and the probe's training."),
    ) -> None:
        """Train and evaluate a probe; writes probe.json (probe-random-init.json with --random-init)."""
        from rich.console import Console

        from ..config import parse_sets
        from ..errors import ConfigError
        from ..plugins import load_plugins
        from ..probes.runner import probe_run, write_report
        from ..probes.settings import probe_settings
        from ..progress import ProbeProgress

        plugins = load_plugins(ctx.obj["plugins"])
        if run is None and not (random_init and backbone):
            raise ConfigError("give a RUN folder, or --random-init --backbone NAME for a random baseline")
        names = list(layer) + ([s.strip() for s in layers.split(",") if s.strip()] if layers else [])
        if select not in ("last", "val"):
            raise ConfigError(f"--select '{select}': use last or val")
        settings = probe_settings(  # checked before any data or weights are loaded
            probe=probe,
            options=parse_sets(sets),
            layers=tuple(names),
            finetune=finetune,
            augment=augment,
            labels_per_class=labels_per_class,
            epoch_size=epoch_size,
            val_fraction=val_fraction,
            select=select,
            seed=seed,
            device=device,
            tiles=tiles,
            flip=flip,
            precision=precision,
        )
        report = probe_run(
            run,
            settings,
            plugins,
            data=data,
            test_data=test_data,
            random_init=random_init,
            backbone=backbone,
            backbone_options=parse_sets(backbone_sets),
            observer=ProbeProgress(),
        )
        folder = out or (run if run is not None and run.is_dir() else (run.parent if run is not None else Path(".")))
        path = write_report(report, folder, "probe-random-init.json" if random_init else "probe.json")
        print_report(report, Console(soft_wrap=True))
        Console(stderr=True).print(f"report: {path}")
