"""Fault injection: what a hostile or unlucky user does to the CLI.

Every fault the user can cause or fix (a bad option value, a broken file, a full disk, a folder in
the way, a plugin that exits or collides with another) ends in ONE line ``error: ...`` that names
the problem and the fix, exit code 2 and no traceback; the rest of sslkit keeps working.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isolation import isolate_data_root
from sslkit import __version__
from sslkit.checkpoint import FORMAT, load_checkpoint
from sslkit.errors import CheckpointError

TINY = [
    "--device",
    "cpu",
    "--set",
    "backbone.blocks=3",
    "--set",
    "backbone.width=0.1",
    "--set",
    "data.subset=64",
    "--set",
    "data.batch_size=32",
]


def sslkit(*args, env=None, cwd=None, shell_prefix=None):
    """Run ``python -m sslkit ARGS``; ``shell_prefix`` (e.g. "ulimit -f 50") runs it under bash."""
    cmd = [sys.executable, "-m", "sslkit", *map(str, args)]
    if shell_prefix:
        cmd = ["bash", "-c", f'{shell_prefix}; exec "$@"', "bash", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


def one_error_line(result, *needles, after_other_lines=False):
    """Assert exit 2 with exactly one stderr line 'error: ...' containing every needle; return it.
    ``after_other_lines``: progress lines or warnings may come before it."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if after_other_lines:
        assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
        lines = lines[-1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny trained run, shared (read-only) by the tests that need a checkpoint."""
    import sslkit as api

    out = tmp_path_factory.mktemp("faults") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_data_root(tmp_path_factory, monkeypatch)
        tiny = {"backbone.blocks": 3, "backbone.width": 0.1, "data.subset": 64, "data.batch_size": 32}
        api.train("rotation", out, epochs=1, device="cpu", progress=False, **tiny)
    return out


# --------------------------------------------------------------------------- option values


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--val-fraction", "0.7", "--val-fraction 0.7: out of range; use a value >= 0 and < 0.5"),
        ("--val-fraction", "1.0", "--val-fraction 1.0: out of range"),
        ("--val-fraction", "-0.1", "--val-fraction -0.1: out of range"),
        ("--labels-per-class", "0", "--labels-per-class 0: out of range; use a value >= 1"),
    ],
)
def test_probe_option_out_of_range(option, value, needle, tmp_path, cli):
    # checked before the run is read: the run folder need not exist
    one_error_line(cli("probe", tmp_path / "no-run", option, value), needle)


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sslkit {__version__}"


# --------------------------------------------------------------------------- config files


def test_config_not_utf8(tmp_path, cli):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes("epochs = 1\n# caf\u00e9\n".encode("latin-1"))
    one_error_line(cli("train", "rotation", "--config", bad, "--out", tmp_path / "r"), "not UTF-8", "save it as UTF-8")


def test_config_is_a_folder(tmp_path, cli):
    one_error_line(cli("train", "rotation", "--config", tmp_path, "--out", tmp_path / "r"), "is a folder", ".toml file")


# --------------------------------------------------------------------------- the file system


def test_out_is_a_file(tmp_path, cli):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    line = one_error_line(cli("train", "rotation", "--epochs", "1", *TINY, "--out", blocker / "run"), "cannot write")
    assert str(blocker) in line and "--out" in line
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        one_error_line(
            cli("train", "rotation", "--epochs", "1", *TINY, "--out", locked / "run"),
            "permission denied",
            str(locked),
        )
    finally:
        locked.chmod(0o700)


def test_full_disk_keeps_the_finished_checkpoint(run, tmp_path):
    """A write that fails (a file size limit: EFBIG, like ENOSPC) is one line naming the file, and
    the checkpoint of the epoch before stays byte for byte intact, with no temporary file left."""
    copy = tmp_path / "run"
    copy.mkdir()
    for f in run.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    before = (copy / "checkpoint.pt").read_bytes()
    limit_kb = len(before) // 1024 // 2  # half a checkpoint: the next one cannot be written
    result = sslkit(
        "train",
        "rotation",
        "--epochs",
        "2",
        *TINY,
        "--out",
        copy,
        "--resume",
        shell_prefix=f"trap '' XFSZ; ulimit -f {limit_kb}",
    )
    one_error_line(result, "cannot write", str(copy / "checkpoint.pt"), "file size limit", after_other_lines=True)
    assert (copy / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(copy)["epoch"] == 1
    assert not [p.name for p in copy.iterdir() if p.name.endswith(".tmp")]


def _load_plugins_raises(monkeypatch: pytest.MonkeyPatch, fail) -> None:
    """Make ``sslkit plugins`` fail inside loading. The modules that bind ``load_plugins`` at
    import are imported first, so that none keeps the failing one after this test."""
    import sslkit.api  # noqa: F401
    import sslkit.plugins

    monkeypatch.setattr(sslkit.plugins, "load_plugins", fail)


@pytest.mark.parametrize(
    "code, needle",
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "no space left"),
        (errno.EDQUOT, "quota"),
        (errno.EEXIST, "in the way"),
        (errno.ENOTDIR, "not a folder"),
    ],
)
def test_file_system_errors_are_one_line(code, needle, monkeypatch, capsys):
    """The CLI's top-level handler maps the OSErrors a user can fix to one line naming the path."""
    from sslkit.cli import main

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), "/runs/x/checkpoint.pt")

    _load_plugins_raises(monkeypatch, refuse)
    with pytest.raises(SystemExit) as info:
        main(["plugins"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write '/runs/x/checkpoint.pt': ")
    assert needle in lines[0] and "--out" in lines[0]


def test_torch_full_disk_runtime_error_is_one_line(monkeypatch, capsys):
    from sslkit.cli import main

    def full(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    _load_plugins_raises(monkeypatch, full)
    with pytest.raises(SystemExit) as info:
        main(["plugins"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full" in err and "--out" in err


@pytest.mark.parametrize("exc", [RuntimeError("a real bug"), OSError(errno.EIO, "I/O error"), ZeroDivisionError()])
def test_other_exceptions_keep_their_traceback(exc, monkeypatch):
    """Only the user's faults are one line: a bug still raises (and prints its traceback)."""
    from sslkit.cli import main

    def bug(*args, **kwargs):
        raise exc

    _load_plugins_raises(monkeypatch, bug)
    with pytest.raises(type(exc)):
        main(["plugins"])


def test_export_to_a_folder_writes_the_formats_file_in_it(run, tmp_path, cli):
    """`-o exports/` is a folder (created if need be), never a file named `exports`."""
    folder = tmp_path / "exports"
    folder.mkdir()
    result = cli("export", run, "--format", "torch", "-o", str(folder))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in folder.iterdir()] == ["backbone.pt"]
    missing = tmp_path / "expdir"
    result = cli("export", run, "--format", "safetensors", "-o", f"{missing}/")
    assert result.returncode == 0, result.stderr
    assert missing.is_dir() and [p.name for p in missing.iterdir()] == ["backbone.safetensors"]
    file_in_the_way = tmp_path / "f"
    file_in_the_way.write_text("x")
    one_error_line(cli("export", run, "-o", f"{file_in_the_way}/x.onnx"), "is a file, not a folder")


def test_checkpoint_without_config(tmp_path, cli):
    broken = tmp_path / "broken.pt"
    torch.save({"format": FORMAT, "epoch": 1}, broken)
    with pytest.raises(CheckpointError, match="has no 'config' entry"):
        load_checkpoint(broken)
    one_error_line(cli("probe", broken), "has no 'config' entry", "train again")


# --------------------------------------------------------------------------- plugins


def _fake_distribution(site: Path, dist: str, plugin: str, source: str) -> None:
    """An installed distribution with one ``sslkit`` entry point, found through PYTHONPATH."""
    module = f"{dist.replace('-', '_')}_mod"
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sslkit]\n{plugin} = {module}\n")


SPIN = """
from sslkit import hookimpl
from sslkit_rotation import RotationPrediction

@hookimpl
def register_pretext_tasks(register):
    register("spin", RotationPrediction)
"""


def _site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *plugins: tuple[str, str, str]) -> dict[str, str]:
    """Install fake plugin distributions on this process's path (for in-process runs) and return
    the environment that gives a subprocess the same."""
    site = tmp_path / "site"
    site.mkdir()
    for dist, plugin, source in plugins:
        _fake_distribution(site, dist, plugin, source)
    monkeypatch.syspath_prepend(str(site))
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def test_plugin_that_exits_at_import_is_skipped(tmp_path, monkeypatch, cli):
    _site(tmp_path, monkeypatch, ("sslkit-quitter", "quitter", "import sys\nsys.exit(3)\n"))
    listed = cli("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    warnings = [line for line in listed.stderr.splitlines() if "quitter" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: plugin 'quitter' was not loaded")
    assert "sys.exit(3)" in warnings[0] and "SSLKIT_PLUGINS='-quitter'" in warnings[0]
    records = {r["name"]: r for r in json.loads(listed.stdout)["plugins"]}
    assert records["quitter"]["status"] == "failed" and records["rotation"]["status"] == "loaded"
    # the other commands still run
    one_error_line(
        cli("train", "rotation", "--set", "backbone.widht=1", "--out", tmp_path / "r"),
        "backbone.widht",
        after_other_lines=True,
    )


def test_duplicate_task_between_two_plugins(tmp_path, monkeypatch, cli):
    env = _site(tmp_path, monkeypatch, ("sslkit-spin-a", "spina", SPIN), ("sslkit-spin-b", "spinb", SPIN))
    listed = cli("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    warning = [line for line in listed.stderr.splitlines() if "spin" in line]
    assert len(warning) == 1 and "'spina'" in warning[0] and "'spinb'" in warning[0], listed.stderr
    conflicts = json.loads(listed.stdout)["conflicts"]
    assert [(c["name"], c["plugins"]) for c in conflicts] == [("spin", ["spina", "spinb"])]
    table = cli("plugins")
    assert table.returncode == 0 and "spin (conflict)" in table.stdout and "conflict:" in table.stdout
    # using the contested name: one loud line naming both and how to disable one; a real process here
    used = sslkit("train", "spin", "--out", tmp_path / "r", env=env)
    assert used.returncode == 2 and "Traceback" not in used.stderr
    error = used.stderr.strip().splitlines()[-1]
    assert error.startswith("error: pretext task 'spin' is registered by both plugin 'spina'")
    assert "plugin 'spinb'" in error and "--plugins -spina" in error
    # a command that does not use it runs (gets as far as the bad key), and so does 'spin' once one is off
    # (the bad key is reported only after the task was resolved); the conflict stays a warning there
    for args in (["train", "rotation"], ["--plugins", "-spinb", "train", "spin"]):
        other = cli(*args, "--set", "backbone.widht=1", "--out", tmp_path / "r")
        assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr
        assert other.stderr.strip().splitlines()[-1].startswith("error: unknown config key 'backbone.widht'"), (
            other.stderr
        )


def test_unknown_plugin_selection_is_an_error(cli):
    one_error_line(
        cli("--plugins", "rotaton", "plugins"), "'rotaton'", "did you mean 'rotation'?", "installed plugins:"
    )
    one_error_line(cli("--plugins", "-rotaton", "plugins"), "did you mean 'rotation'?")
    one_error_line(cli("plugins", env={"SSLKIT_PLUGINS": "rotaton"}), "did you mean 'rotation'?")


def test_disabled_builtin_is_named(cli):
    one_error_line(
        cli("--plugins", "-backbones", "train", "rotation"),
        "unknown backbone 'nin'",
        "the built-in plugin 'backbones' is disabled by --plugins",
    )


# --------------------------------------------------------------------------- retrieval


def test_neighbors_warns_about_missing_images(tmp_path, cli):
    from sslkit.retrieval import save_collection

    files = []
    for i in range(4):
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(path)
        files.append(path)
    save_collection(tmp_path / "emb.npy", np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32), files, {})
    files[1].unlink()
    files[3].unlink()
    result = cli("neighbors", tmp_path / "emb.npy", "--random", "4", "--neighbors", "3", "-o", tmp_path / "grid.png")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "2 of the 4 images" in warnings[0] and "grey" in warnings[0], result.stderr
    assert (tmp_path / "grid.png").is_file()
