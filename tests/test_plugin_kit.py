"""The plugin author's kit: the jigsaw example plugin, `sslkit new-plugin` and broken plugins.

Generated packages are installed with ``pip install --target`` into a temporary folder (no
network, no build isolation, never into the test's own environment) and found through
``PYTHONPATH``, exactly as an installed distribution: entry points, name and version.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslkit.scaffold import ScaffoldError, render, validate_name, write_plugin


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


needs_jigsaw = pytest.mark.skipif(
    not _installed("sslkit-jigsaw"),
    reason="the example plugin is not installed: pip install -e ./examples/sslkit-jigsaw",
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SSLKIT_PLUGINS"}
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env or _env(), cwd=cwd, timeout=600)


# --------------------------------------------------------------------------- the jigsaw example


@needs_jigsaw
def test_jigsaw_is_listed_with_its_distribution_and_version(cli):
    proc = cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    record = {r["name"]: r for r in data["plugins"]}["jigsaw"]
    assert record["status"] == "loaded"
    assert record["distribution"] == "sslkit-jigsaw"
    assert record["version"] == md.version("sslkit-jigsaw")
    rows = {(r["kind"], r["name"]): r for r in data["provides"]}
    assert rows[("pretext task", "jigsaw")]["distribution"] == "sslkit-jigsaw"


@needs_jigsaw
def test_train_jigsaw_from_the_command_line(tmp_path, cli):
    sets = [
        "backbone.blocks=3",
        "backbone.width=0.1",
        "data.subset=192",
        "data.batch_size=32",
        "task.permutations=10",
        "task.tile_dim=16",
        "task.hidden=32",
    ]
    proc = cli(
        "train",
        "jigsaw",
        "--backbone",
        "nin",
        "--data",
        "sample",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        *(a for s in sets for a in ("--set", s)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and math.isfinite(metrics[0]["train_loss"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["plugins"]["jigsaw"].startswith("sslkit-jigsaw ")
    assert state["task"]["permutation_set"].shape == (10, 9)  # the label table travels with the weights


# --------------------------------------------------------------------------- sslkit new-plugin


def test_new_plugin_rejects_bad_names_kinds_and_existing_folders(tmp_path, plugins):
    for name in ("Bad", "9lives", "has-dash", "class", "x" * 41, ""):
        with pytest.raises(ScaffoldError, match="invalid plugin name"):
            validate_name(name, "task", plugins)
    with pytest.raises(ScaffoldError, match="unknown plugin kind"):
        validate_name("fine", "dataset", plugins)
    with pytest.raises(ScaffoldError, match="backbone 'nin' is already registered by plugin 'backbones'"):
        validate_name("nin", "backbone", plugins)
    with pytest.raises(ScaffoldError, match="a plugin named 'probes' is already installed"):
        validate_name("probes", "task", plugins)
    first = write_plugin("fresh_name", "probe", tmp_path, plugins)
    before = {p: p.read_text() for p in first.rglob("*") if p.is_file()}
    with pytest.raises(ScaffoldError, match="already exists") as info:
        write_plugin("fresh_name", "probe", tmp_path, plugins)
    assert "\n" not in str(info.value)
    assert {p: p.read_text() for p in first.rglob("*") if p.is_file()} == before  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["sslkit-fresh-name"]  # no temporary leftovers


def test_new_plugin_cli_errors_are_one_line(tmp_path, cli):
    proc = cli("new-plugin", "nin", "--kind", "backbone", "-o", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: backbone 'nin' is already registered") and proc.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_render_fills_every_placeholder():
    for kind in ("task", "backbone", "probe"):
        files = render("my_thing", kind)
        assert "pyproject.toml" in files and "sslkit_my_thing/plugin.py" in files
        assert 'my_thing = "sslkit_my_thing.plugin"' in files["pyproject.toml"]
        for text in files.values():
            assert "${" not in text


@pytest.mark.slow
def test_generated_plugins_install_and_pass_their_tests_and_broken_ones_are_named(tmp_path, monkeypatch, cli):
    # Three working packages, one of each kind, the first through the CLI.
    proc = cli("new-plugin", "kit_flip", "--kind", "task", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "pip install -e" in proc.stdout
    write_plugin("kit_convnet", "backbone", tmp_path)
    write_plugin("kit_linear", "probe", tmp_path)
    # Two broken ones: a task under a name that is already taken, and a misspelt hook.
    dupe = write_plugin("kit_dupe", "task", tmp_path)
    plugin_py = dupe / "sslkit_kit_dupe" / "plugin.py"
    plugin_py.write_text(plugin_py.read_text().replace('register("kit_dupe"', 'register("kit_flip"'))
    typo = write_plugin("kit_typo", "task", tmp_path)
    plugin_py = typo / "sslkit_kit_typo" / "plugin.py"
    plugin_py.write_text(plugin_py.read_text().replace("def register_pretext_tasks(", "def register_pretext_task("))

    site = tmp_path / "site"
    packages = [str(tmp_path / f"sslkit-kit-{n}") for n in ("flip", "convnet", "linear", "dupe", "typo")]
    pip = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            *packages,
        ]
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = _env(PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.syspath_prepend(str(site))  # installed for the CLI runs in this process too

    # The duplicate is a conflict: listed and warned about, and using the name is an error
    # naming both plugins, their distributions and the name.
    proc = cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [c["name"] for c in json.loads(proc.stdout)["conflicts"]] == ["kit_flip"]
    proc = cli("train", "kit_flip")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    message = errors[0]
    assert message.startswith("error: pretext task 'kit_flip' is registered by both")
    assert (
        "plugin 'kit_flip' (sslkit-kit-flip 0.1.0)" in message
        and "plugin 'kit_dupe' (sslkit-kit-dupe 0.1.0)" in message
    )

    # Disabled, the rest loads; the misspelt hook is reported by plugin name with the fix.
    env["SSLKIT_PLUGINS"] = "-kit_dupe"
    proc = cli("plugins", "--json", env={"SSLKIT_PLUGINS": "-kit_dupe"})
    assert proc.returncode == 0, proc.stderr
    records = {r["name"]: r for r in json.loads(proc.stdout)["plugins"]}
    assert records["kit_typo"]["status"] == "failed"
    assert (
        "unknown hook 'register_pretext_task' (did you mean 'register_pretext_tasks'?)" in records["kit_typo"]["error"]
    )
    assert "plugin 'kit_typo' was not loaded" in proc.stderr
    for name, dist in (
        ("kit_flip", "sslkit-kit-flip"),
        ("kit_convnet", "sslkit-kit-convnet"),
        ("kit_linear", "sslkit-kit-linear"),
    ):
        assert records[name]["status"] == "loaded" and records[name]["distribution"] == dist
    proc = cli("train", "kit_typo", env={"SSLKIT_PLUGINS": "-kit_dupe"})
    assert proc.returncode == 2
    assert "unknown pretext task 'kit_typo'" in proc.stderr and "plugins that failed to load: kit_typo" in proc.stderr

    # Each generated package passes its own tests, unchanged.
    tests = [str(tmp_path / f"sslkit-kit-{n}" / "tests") for n in ("flip", "convnet", "linear")]
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "6 passed" in proc.stdout
