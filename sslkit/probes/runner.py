"""The one probe entry: ``sslkit probe``, ``sslkit.load(run).probe()`` and ``sslkit reproduce`` all
call :func:`probe_run` (a trunk, the labelled splits, the probes, the report)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import OutputLock, write_json
from ..plugins import Plugins
from ..run import LoadedRun
from .evaluation import FeatureCache, run_probes
from .settings import ProbeSettings
from .splits import ProbeSplits, load_splits
from .training import ProbeObserver
from .trunk import load_trunk


def probe_run(
    run: str | Path | LoadedRun | None,
    settings: ProbeSettings,
    plugins: Plugins,
    *,
    data: str | None = None,
    test_data: str | None = None,
    splits: ProbeSplits | None = None,
    random_init: bool = False,
    backbone: str | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    observer: ProbeObserver | None = None,
    feature_cache: FeatureCache | None = None,
) -> dict[str, Any]:
    """Probe a run's trunk (or a random init of it, or with no run a fresh ``backbone``) and return
    the report (``report["layers"][layer]["test_acc"]``).

    ``data`` defaults to the run's own training data (a fresh backbone needs it given);
    ``splits`` (already loaded, e.g. shared by reproduce's rows) replaces ``data``/``test_data``."""
    trunk = load_trunk(
        run, plugins, random_init=random_init, backbone=backbone, backbone_options=backbone_options, seed=settings.seed
    )
    if splits is None:
        name = data or trunk.data
        if name is None:
            from ..errors import ConfigError

            raise ConfigError("no labelled data to probe on: give --data (a dataset name or a labelled folder)")
        splits = load_splits(name, test_data, plugins, settings, trunk.image_size)
    report = run_probes(trunk, splits, plugins, settings, observer=observer, feature_cache=feature_cache)
    report["run"] = str(run.folder if isinstance(run, LoadedRun) else run) if run is not None else None
    return report


def write_report(report: dict[str, Any], folder: str | Path, name: str = "probe.json") -> Path:
    """``folder/name``, atomically, holding that file's output lock."""
    path = Path(folder) / name
    with OutputLock(path, "probe report", folder=False):
        write_json(path, report)
    return path
