"""Several processes (torchrun, gloo on CPU): equal disjoint shares, independent pretext draws,
streaming stores, tasks that leave parameters unused, and device placement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

# Runs under torchrun: records each rank's sample indices and the pretext targets of its first
# steps (of each task of a mix: "rotation+context"), then trains as `sslkit train` would.
RECORDER = textwrap.dedent("""
    import json, os, sys
    import torch
    import sslkit.engine.trainer as trainer
    from sslkit.config import assemble
    from sslkit.plugins import load_plugins

    out, task, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
    rank = int(os.environ.get("RANK", "0"))
    seen = {"shares": [], "targets": []}
    real_iterate = trainer.iterate_batches

    def iterate(source, batches, *args, **kwargs):
        if len(batches) and len(source) > 40:  # the training split, not the held-out one
            seen["shares"].append([[int(i) for i in b] for b in batches])
        return real_iterate(source, batches, *args, **kwargs)

    trainer.iterate_batches = iterate
    plugins = load_plugins()

    def recorder(name, real_prepare):
        def prepare(self, x, generator):
            inputs, targets = real_prepare(self, x, generator)
            kept = seen["targets"] if name == task else seen.setdefault(name, [])
            if self.training and x.shape[0] > 2 and len(kept) < 3:  # not the DDP dry run
                kept.append(targets.tolist())
            return inputs, targets
        return prepare

    for name in [part for part in task.split("+") if part] if "+" in task else [task]:
        plugins.tasks.get(name).prepare = recorder(name, plugins.tasks.get(name).prepare)
    cfg = assemble(task, plugins, sets=sets, flags={"device": "cpu"})
    trainer.train(cfg, out + "/run", plugins=plugins)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(seen, f)
""")

TINY = ["backbone.blocks=3", "backbone.width=0.1", "data.batch_size=32", "optim.lr=0.01", "epochs=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(tmp_path, name, nproc, task, sets):
    out = tmp_path / name
    out.mkdir()
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    cmd = [sys.executable, str(script), str(out), task, *sets]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *cmd[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]
    curve = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return ranks, curve


def _store(tmp_path, n=140):
    from sslkit.data.store import pack

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        a[:16] //= 3
        Image.fromarray(a).save(folder / f"{i:04d}.png")
    pack(folder, tmp_path / "store", encoding="raw")
    return tmp_path / "store"


def test_two_processes_stream_disjoint_equal_shares_and_match_one(tmp_path):
    """From a store: the ranks' shares are disjoint, equally long, together one process's
    batches, the same every run; the 2-process loss equals the 1-process one."""
    sets = [
        *TINY,
        f"data.name={_store(tmp_path)}",
        "data.in_memory=false",
        "data.workers=1",
        "data.mean=[0.4,0.4,0.4]",
        "data.std=[0.25,0.25,0.25]",
    ]
    (one,), curve1 = _run(tmp_path, "one", 1, "rotation", sets)
    (r0, r1), curve2 = _run(tmp_path, "two", 2, "rotation", sets)
    for epoch in range(2):
        a, b = r0["shares"][epoch], r1["shares"][epoch]
        assert len(a) == len(b) and all(len(x) == len(y) == 16 for x, y in zip(a, b, strict=True))  # equal steps
        for whole, x, y in zip(one["shares"][epoch], a, b, strict=True):
            assert not set(x) & set(y) and x + y == whole  # disjoint halves of one process's batch
    assert r0["shares"][0] != r0["shares"][1]  # a new order each epoch
    for p, q in zip(curve1, curve2, strict=True):
        assert q["train_loss"] == pytest.approx(p["train_loss"], rel=1e-4)


def test_ranks_draw_independent_random_rotations(tmp_path):
    """rotation mode=random: each rank draws its own angles (they were identical on every rank)."""
    sets = [*TINY, "data.subset=128", "task.mode=random", "epochs=1"]
    (r0, r1), _ = _run(tmp_path, "two", 2, "rotation", sets)
    assert r0["targets"] != r1["targets"]
    assert len(r0["targets"][0]) == 16 and len(set(r0["targets"][0])) > 1


def test_jigsaw_reading_a_middle_stage_trains_under_two_processes(tmp_path):
    """A task that leaves later blocks without gradients (jigsaw's task.stage): DDP finds the
    unused parameters instead of raising on step 2."""
    pytest.importorskip("sslkit_jigsaw")
    sets = [
        "backbone.blocks=3",
        "backbone.width=0.1",
        "data.batch_size=16",
        "data.subset=96",
        "epochs=1",
        "task.stage=block1",
    ]
    (r0, r1), curve = _run(tmp_path, "two", 2, "jigsaw", sets)
    assert curve[0]["train_loss"] > 0 and r0["targets"] != r1["targets"]


@pytest.mark.parametrize("sampling", ["all", "alternate"])
def test_a_mix_draws_per_rank_per_task_under_two_processes(tmp_path, sampling):
    """rotation+context on 2 processes: a task of a mix draws per rank (random angles; every
    task's generator is a copy of the rank's own), and each task's metrics are reported; with
    alternating steps, DDP finds the head each step leaves unused."""
    sets = [*TINY, "data.subset=128", "epochs=1", "task.rotation.mode=random", f"task.sampling={sampling}"]
    (r0, r1), curve = _run(tmp_path, "two", 2, "rotation+context", sets)
    assert r0["rotation"] != r1["rotation"]  # random angles, per rank
    assert len(r0["rotation"][0]) == 16 and len(r0["context"][0]) == 8 * 16  # this rank's half of 32
    for key in ("rotation/train_loss", "context/train_loss", "rotation/heldout_acc", "context/heldout_acc"):
        assert key in curve[0], key


def test_one_gpu_for_all_ranks_is_refused(monkeypatch):
    from sslkit.engine.distributed import setup
    from sslkit.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        setup("cuda:0")
