"""The command line: bad input gives one line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


def sslkit(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sslkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def _empty_folder(tmp_path):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("no images here")
    return str(tmp_path / "empty")


BAD = {
    "unknown task": (["train", "rotaton"], "unknown pretext task 'rotaton' (did you mean 'rotation'?)"),
    "unknown backbone": (["train", "rotation", "--backbone", "nim"], "unknown backbone 'nim' (did you mean 'nin'?)"),
    "unknown --set key": (
        ["train", "rotation", "--set", "backbone.widht=0.5"],
        "unknown config key 'backbone.widht' (did you mean 'width'?)",
    ),
    "wrong --set type": (["train", "rotation", "--set", "backbone.width=wide"], "config 'backbone.width'"),
    "malformed --set": (["train", "rotation", "--set", "width"], "expected KEY=VALUE"),
    "--data nowhere": (
        ["train", "rotation", "--data", "/no/such/folder"],
        "--data '/no/such/folder': no such dataset or folder",
    ),
    "folder without images": (["train", "rotation", "--data", "EMPTY"], "no images found"),
    "unknown preset": (["train", "rotation", "--preset", "papr"], "unknown preset 'papr' (did you mean 'paper'?)"),
    "missing config file": (
        ["train", "rotation", "--config", "/no/config.toml"],
        "--config '/no/config.toml': no such file",
    ),
    "resume without out": (["train", "rotation", "--resume"], "--resume needs --out"),
    "resume with a wrong value": (["train", "rotation", "--resume=yes-please"], "--resume yes-please: use --resume"),
    "a view larger than the images": (
        ["train", "simclr", "--set", 'task.views=[{"count": 2, "size": 64}]'],
        "views of 64 px (group 0), larger than the 32-px training images",
    ),
    "an unknown view option": (
        ["train", "simclr", "--set", 'task.views=[{"count": 2, "sizee": 16}]'],
        "unknown config key 'task.views.0.sizee'",
    ),
    "unknown device": (["train", "rotation", "--device", "tpu"], "--device 'tpu'"),
    "an unknown task in a mix": (
        ["train", "rotation+contxt"],
        "the mix 'rotation+contxt': unknown pretext task 'contxt' (did you mean 'context'?)",
    ),
    "a weight for a task not in the mix": (
        ["train", "rotation+context", "--set", "task.weights.jigsaw=1"],
        "unknown config key 'task.weights.jigsaw'; valid keys here: rotation, context",
    ),
    "a negative weight": (
        ["train", "rotation+context", "--set", "task.weights.context=-0.5"],
        "config 'task.weights.context': Input should be greater than or equal to 0",
    ),
    "the same task twice in a mix": (
        ["train", "rotation+rotation"],
        "the mix 'rotation+rotation' names 'rotation' twice",
    ),
}


def _bad_args(case: str, tmp_path: Path) -> list[str]:
    args = [_empty_folder(tmp_path) if a == "EMPTY" else a for a in BAD[case][0]]
    return args if "--resume" in args else [*args, "--out", str(tmp_path / "run")]


def _one_error_line(result: subprocess.CompletedProcess, expected: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2(case, tmp_path, cli):
    """Run in this process (tests/cli_run.py); a bug would raise here instead of printing a line."""
    if "simclr" in BAD[case][0]:  # a view-declaring task: the SimCLR example plugin
        pytest.importorskip("sslkit_simclr")
    _one_error_line(cli(*_bad_args(case, tmp_path)), BAD[case][1])


@pytest.mark.parametrize("case", ["unknown task", "folder without images"])
def test_a_real_process_prints_the_same_line(case, tmp_path, cli):
    """The console script's process and the in-process runs above say the same, and nothing else."""
    args = _bad_args(case, tmp_path)
    assert _one_error_line(sslkit(*args), BAD[case][1]) == _one_error_line(cli(*args), BAD[case][1])


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from sslkit.cli import build_app; build_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    start = time.perf_counter()
    result = sslkit("--help")
    assert result.returncode == 0 and "train" in result.stdout
    assert time.perf_counter() - start < 20  # generous: only guards against importing torch for help


def test_plugins_command_and_disabling(tmp_path, cli):
    listed = json.loads(cli("plugins", "--json").stdout)
    assert {
        "kind": "pretext task",
        "name": "rotation",
        "plugin": "rotation",
        "distribution": "sslkit-rotation",
        "version": "0.1.0",
    } in listed["provides"]
    off = cli("--plugins", "-rotation", "train", "rotation")
    assert off.returncode == 2 and "unknown pretext task 'rotation'" in off.stderr
    env_off = json.loads(cli("plugins", "--json", env={"SSLKIT_PLUGINS": "none"}).stdout)
    assert {r["name"]: r["status"] for r in env_off["plugins"]}["rotation"] == "disabled"


def test_existing_run_is_never_overwritten(tmp_path, cli):
    run = tmp_path / "run"
    args = [
        "train",
        "rotation",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(run),
        "--set",
        "backbone.blocks=3",
        "--set",
        "backbone.width=0.1",
        "--set",
        "data.subset=64",
        "--set",
        "data.batch_size=32",
    ]
    assert cli(*args).returncode == 0
    before = (run / "checkpoint.pt").read_bytes()
    again = cli(*args)
    assert again.returncode == 2 and "--resume" in again.stderr
    assert (run / "checkpoint.pt").read_bytes() == before


def torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m sslkit ARGS` (gloo on CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sslkit"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=600, env=env)


def test_torchrun_two_processes_match_one(tmp_path):
    """`torchrun --nproc_per_node 2 -m sslkit train ...` trains with DDP over gloo, and with the
    same global batch gives the loss curve of one process (BatchNorm statistics are global)."""
    args = [
        "train",
        "rotation",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--set",
        "backbone.blocks=3",
        "--set",
        "backbone.width=0.1",
        "--set",
        "data.subset=140",
        "--set",
        "data.batch_size=64",
        "--set",
        "optim.lr=0.01",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "sslkit", *args, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(*args, "--out", str(tmp_path / "two"), env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x2 processes" in two.stderr
    curve = lambda run: [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    a, b = curve("one"), curve("two")
    assert [r["epoch"] for r in b] == [1, 2, 3] and "heldout_acc" in b[-1]
    for ra, rb in zip(a, b, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
        assert rb["heldout_loss"] == pytest.approx(ra["heldout_loss"], rel=1e-3)


def test_resume_with_a_different_world_size(tmp_path):
    """A run started by 2 processes resumes in 1 (checkpoints hold the unwrapped model)."""
    run = tmp_path / "run"
    args = [
        "train",
        "rotation",
        "--device",
        "cpu",
        "--out",
        str(run),
        "--set",
        "backbone.blocks=3",
        "--set",
        "backbone.width=0.1",
        "--set",
        "data.subset=128",
        "--set",
        "data.batch_size=32",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = torchrun(*args, "--epochs", "1", env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    one = sslkit(*args, "--epochs", "2", "--resume", env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resuming after epoch 1" in one.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def _options(command, path=()):
    """(command path, option) for every visible option of every command (typer's click, walked)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _options(sub, (*path, name))
        return
    for p in command.params:
        if getattr(p, "param_type_name", "") == "option" and not p.hidden:
            yield " ".join(path), p


def test_every_short_flag_means_one_thing_and_every_option_has_help():
    import typer

    from sslkit.cli import build_app

    meanings: dict[str, set[str]] = {}
    missing = []
    for path, option in _options(typer.main.get_command(build_app())):
        long = next((o for o in option.opts if o.startswith("--")), option.opts[0])
        for flag in option.opts + option.secondary_opts:
            if len(flag) == 2 and flag[1] != "-":
                meanings.setdefault(flag, set()).add(long)
        if not (option.help or "").strip():
            missing.append(f"sslkit {path} {long}")
    conflicts = {flag: sorted(longs) for flag, longs in meanings.items() if len(longs) > 1}
    assert not conflicts, f"short flags with several meanings: {conflicts}"
    assert not missing, f"options without help text: {missing}"
    assert meanings["-o"] == {"--out"} and meanings["-s"] == {"--set"}  # the walk sees every command


def test_help_names_values_and_summaries_whole():
    """`--device DEVICE`, not typer's `<str>`; `sslkit --help` lists each command's first sentence
    whole (click cut them at 45 characters); usage errors are one `error:` line naming --help."""
    from sslkit.cli import build_command
    from sslkit.cli.command import first_sentence

    command = build_command()
    for path, option in _options(command):
        assert option.metavar is None or "<" not in option.metavar, (path, option.opts)
    result = sslkit("--help")
    listing = "".join(result.stdout.split())  # the terminal wraps lines, at hyphens too
    for name, sub in command.commands.items():
        assert "".join(first_sentence(sub.help).split()) in listing, name
    commands = result.stdout.split("Commands:", 1)[1].splitlines()
    order = [line.split()[0] for line in commands if line.startswith("  ") and not line.startswith("   ")]
    assert order[0] == "train" and order.index("probe") < order.index("export") < order.index("plugins"), order
    train_help = sslkit("train", "--help").stdout
    assert "--device DEVICE" in train_help and "<str>" not in train_help and "  TASK  Pretext task" in train_help
    bad = sslkit("train", "--precision", "fp8")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert (
        bad.stderr.startswith("error: ") and "'fp8' is not one of" in bad.stderr and "sslkit train --help" in bad.stderr
    )


def test_first_sentence_keeps_dotted_names_whole():
    from sslkit.cli.command import first_sentence

    assert first_sentence("Export a trained encoder. ONNX files carry metadata.") == "Export a trained encoder."
    assert first_sentence("Writes probe.json (and\n more) here.\n\nDetails.") == "Writes probe.json (and more) here."


def _complete(words: str) -> list[str]:
    n = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = sslkit(env={"_SSLKIT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(n)})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_of_names_and_config_keys_reads_a_cached_list(tmp_path):
    """TAB completes registered names (tasks, the next task of a mix, backbones, loggers, export
    formats) and --set keys from a list cached under SSLKIT_DATA, rebuilt when plugins change."""
    from sslkit.cli.completion import _key

    assert _complete("sslkit train ro") == ["rotation"]
    cache = Path(os.environ["SSLKIT_DATA"]) / "completion.json"
    assert json.loads(cache.read_text())["key"] == _key()
    assert _complete("sslkit train rotation+con") == ["rotation+context"]
    assert "optim.lr=" in _complete("sslkit train rotation --set optim.l")
    assert "task.angles=" in _complete("sslkit train rotation --set task.an")
    assert {"nin", "resnet18"} <= set(_complete("sslkit train rotation --backbone "))
    assert {"csv", "tensorboard"} <= set(_complete("sslkit train rotation --logger "))
    assert _complete("sslkit export run --format onn") == ["onnx"]
    stale = json.loads(cache.read_text())
    cache.write_text(json.dumps({"key": "an older set of plugins", "value": {**stale["value"], "tasks": ["old"]}}))
    assert _complete("sslkit train ro") == ["rotation"]  # rebuilt, not the stale list
