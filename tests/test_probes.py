"""Probes: architectures as specified (Gidaris et al., ICLR 2018, sec. 3.1), kNN, label subsets, the probe command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sslkit.cli import main
from sslkit.data.datasets import ImageData
from sslkit.errors import ConfigError
from sslkit.factory import create_backbone, create_probe
from sslkit.probes import evaluation
from sslkit.probes.knn import KNNProbe
from sslkit.probes.settings import ProbeSettings
from sslkit.probes.splits import first_k_per_class, load_splits, make_splits
from sslkit.probes.training import ProbeObserver
from sslkit.probes.trunk import load_trunk


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _block2_shape():
    nin = create_backbone("nin", blocks=4).eval()
    with torch.no_grad():
        return tuple(nin(torch.zeros(2, 3, 32, 32), ["block2"])["block2"].shape[1:])


def test_mlp_on_full_nin_block2_matches_the_paper(plugins):
    shape = _block2_shape()
    assert shape == (192, 8, 8) and math.prod(shape) == 12288
    probe = create_probe("mlp", shape, 10, plugins)
    # Linear(12288->200, no bias) + BN(200) + Linear(200->200, no bias) + BN(200) + Linear(200->10)
    assert _params(probe) == 12288 * 200 + 2 * 200 + 200 * 200 + 2 * 200 + 200 * 10 + 10
    linears = [m for m in probe.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.bias is None for m in linears] == [True, True, False]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in probe.modules()) == 2
    assert not any(isinstance(m, torch.nn.Dropout) for m in probe.modules())
    assert probe(torch.randn(4, *shape)).shape == (4, 10)
    cfg = probe.config
    lrs = [cfg.lr * cfg.gamma ** sum(e >= m for m in cfg.milestones) for e in (0, 20, 40, 45)]
    assert cfg.epochs == 100 and lrs == pytest.approx([0.1, 0.02, 0.004, 0.0008])


def test_conv_probe_is_a_fresh_nin_block3(plugins):
    probe = create_probe("conv", (192, 8, 8), 10, plugins)
    convs = [m for m in probe.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == [
        (192, 192, (3, 3), None),
        (192, 192, (1, 1), None),
        (192, 192, (1, 1), None),
    ]
    bn = 3 * 2 * 192
    assert _params(probe) == 192 * 192 * 9 + 2 * 192 * 192 + bn + 192 * 10 + 10
    assert probe(torch.randn(3, 192, 8, 8)).shape == (3, 10)
    assert probe.config.epochs == 100 and probe.config.milestones == (35, 70, 85) and probe.config.gamma == 0.2
    narrow = create_probe("conv", (48, 8, 8), 10, plugins)  # a narrow encoder gets a narrow block
    assert [m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)] == [48, 48, 48]
    wide = create_probe("conv", (48, 8, 8), 10, plugins, channels=64)
    assert wide(torch.randn(2, 48, 8, 8)).shape == (2, 10)


def test_linear_probe(plugins):
    assert _params(create_probe("linear", (192, 8, 8), 10, plugins)) == 192 * 10 + 10
    assert _params(create_probe("linear", (192, 8, 8), 10, plugins, pool="flatten")) == 12288 * 10 + 10


def test_knn_agrees_with_brute_force(plugins):
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(300, 8, 2, 2, generator=g), torch.randint(0, 5, (300,), generator=g)
    queries = torch.randn(40, 8, 2, 2, generator=g)
    probe = create_probe("knn", (8, 2, 2), 5, plugins, k=7, temperature=0.1, chunk=16)
    assert isinstance(probe, KNNProbe)
    probe.fit(bank, labels)
    got = probe(queries)
    b = bank.mean((2, 3))
    b = b / b.norm(dim=1, keepdim=True)
    for i, q in enumerate(queries.mean((2, 3))):
        q = q / q.norm()
        sims = [(float(q @ b[j]), int(labels[j])) for j in range(len(b))]
        sims.sort(reverse=True)
        votes = [0.0] * 5
        for s, c in sims[:7]:
            votes[c] += math.exp(s / 0.1)
        expected = torch.tensor(votes) / sum(votes)
        torch.testing.assert_close(got[i], expected, rtol=1e-4, atol=1e-5)


def test_first_k_per_class_keeps_exactly_the_first_k_in_order():
    labels = torch.tensor([2, 0, 1, 0, 2, 2, 1, 0, 0, 1, 2])
    idx = first_k_per_class(labels, 2)
    assert idx.tolist() == [0, 1, 2, 3, 4, 6]
    assert first_k_per_class(labels, 10).tolist() == list(range(11))  # fewer than K: all kept
    data = ImageData(torch.zeros(11, 3, 4, 4, dtype=torch.uint8), labels, ["a", "b", "c"], "toy")
    test = ImageData(torch.zeros(3, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2]), ["a", "b", "c"], "toy test")
    s = make_splits(data, test, val_fraction=0.0, test_fraction=0.2, labels_per_class=1, seed=0)
    assert s.train.labels.tolist() == [2, 0, 1] and s.val is None and "first 1" in s.notes["labels"]


def _tiny_run(plugins, path):
    from sslkit.config import assemble
    from sslkit.engine.trainer import train

    sets = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=64", "data.batch_size=32", "data.holdout=0.25"]
    train(assemble("rotation", plugins, sets=sets, flags={"epochs": 1, "device": "cpu"}), path, plugins=plugins)
    return path


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_probe_command_writes_probe_json(plugins, tmp_path, capsys):
    run = _tiny_run(plugins, tmp_path / "run")
    code, out, err = _cli(
        capsys,
        "probe",
        str(run),
        "--layers",
        "all",
        "--probe",
        "mlp",
        "--set",
        "epochs=1",
        "--labels-per-class",
        "30",
        "--epoch-size",
        "640",
        "--device",
        "cpu",
    )
    assert code == 0, err
    report = json.loads((run / "probe.json").read_text())
    assert set(report["layers"]) == {"block1", "block2", "block3"}
    vals = {k: v["val"]["acc"] for k, v in report["layers"].items()}
    assert report["best_layer"] == max(vals, key=vals.get)
    assert report["data"]["train_images"] == 300 and report["data"]["test_images"] == 1000
    assert "never used for selection" in report["selection"] and "validation" in report["data"]
    r = report["layers"]["block2"]
    assert r["feature_shape"] == [19, 8, 8] and len(r["history"]) == 1 and r["reported_epoch"] == 1
    assert sum(map(sum, r["confusion"])) == 1000 and list(r["per_class"]) == report["data"]["classes"]
    assert sum(r["confusion"][i][i] for i in range(10)) / 1000 == pytest.approx(r["test_acc"])
    assert "best layer (validation)" in out and "block3" in out

    code, _, err = _cli(
        capsys, "probe", str(run), "--random-init", "--probe", "knn", "--layer", "block2", "-k", "30", "--device", "cpu"
    )
    assert code == 0, err
    knn = json.loads((run / "probe-random-init.json").read_text())
    assert knn["trunk"].startswith("random init") and knn["layers"]["block2"]["history"] == []
    assert json.loads((run / "probe.json").read_text())["best_layer"] == report["best_layer"]  # untouched


def test_probe_command_errors_are_one_line(plugins, tmp_path, capsys):
    run = _tiny_run(plugins, tmp_path / "run")
    code, _, err = _cli(capsys, "probe", str(run), "--layer", "block9", "--device", "cpu")
    assert code == 2 and "unknown stage 'block9'" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli(capsys, "probe", str(run), "--probe", "knn", "--finetune")
    assert code == 2 and "trains no weights" in err
    code, _, err = _cli(capsys, "probe", "--random-init")
    assert code == 2 and "--backbone" in err


def test_frozen_probe_leaves_the_trunk_alone_and_finetune_trains_it(plugins):
    from sslkit.probes.evaluation import run_probes

    trunk = load_trunk(None, plugins, random_init=True, backbone="nin", backbone_options={"blocks": 3, "width": 0.1})
    before = {k: v.clone() for k, v in trunk.backbone.state_dict().items()}
    settings = ProbeSettings(
        probe="conv",
        layers=("block2",),
        options={"epochs": 1},
        labels_per_class=20,
        device="cpu",
        augment=True,
        max_steps=2,
    )
    splits = load_splits("sample", None, plugins, settings)
    seen = []

    class Seen(ProbeObserver):
        def on_epoch(self, layer, record):
            seen.append(layer)

    run_probes(trunk, splits, plugins, settings, observer=Seen())
    assert seen == ["block2"]
    for k, v in trunk.backbone.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    report = run_probes(trunk, splits, plugins, settings.model_copy(update={"finetune": True}))
    assert "fine-tuned" in report["features"]


def test_a_feature_cache_extracts_each_layer_once_and_changes_no_number(plugins, monkeypatch):
    """sslkit reproduce runs several probes on one trunk: with a shared cache the trunk runs once
    per split and layer, and every report equals the one computed without the cache."""

    trunk = load_trunk(None, plugins, random_init=True, backbone="nin", backbone_options={"width": 0.1})
    settings = ProbeSettings(labels_per_class=20, device="cpu", max_steps=2, options={"epochs": 1})
    splits = load_splits("sample", None, plugins, settings)
    jobs = [
        settings.model_copy(update={"probe": "mlp", "layers": ("block1", "block2")}),
        settings.model_copy(update={"probe": "knn", "layers": ("block2",), "options": {}}),
    ]
    plain = [evaluation.run_probes(trunk, splits, plugins, job) for job in jobs]
    calls = []
    real = evaluation.extract
    monkeypatch.setattr(evaluation, "extract", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    cache: evaluation.FeatureCache = {}
    cached = [evaluation.run_probes(trunk, splits, plugins, job, feature_cache=cache) for job in jobs]
    assert calls == [["block1", "block2"]] * 3  # train, val, test; the kNN job extracted nothing
    for a, b in zip(plain, cached, strict=True):
        assert {k: v["test_acc"] for k, v in a["layers"].items()} == {k: v["test_acc"] for k, v in b["layers"].items()}


def test_tiled_trunk_reads_each_tile_on_its_own_and_stitches_the_maps():
    from sslkit.probes.features import run_trunk

    nin = create_backbone("nin", blocks=3, width=0.1).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tiled = run_trunk(nin, x, ["block1", "block2"], tiles=2)
        whole = nin(x, ["block2"])["block2"]
        assert tiled["block2"].shape == whole.shape  # stitched: the whole-image shape
        for name, maps in tiled.items():
            h, w = maps.shape[-2] // 2, maps.shape[-1] // 2
            for i in range(2):
                for j in range(2):
                    alone = nin(x[..., 16 * i : 16 * (i + 1), 16 * j : 16 * (j + 1)], [name])[name]
                    torch.testing.assert_close(maps[..., i * h : (i + 1) * h, j * w : (j + 1) * w], alone)
        assert not torch.allclose(tiled["block2"], whole)  # tiles do not see their neighbours


def test_probe_command_tiles(plugins, tmp_path, capsys):
    args = [
        "probe",
        "--random-init",
        "--backbone",
        "nin",
        "--backbone-set",
        "width=0.1",
        "--probe",
        "knn",
        "--data",
        "sample",
    ]
    args += ["--layer", "block2", "-k", "20", "--device", "cpu", "--out", str(tmp_path)]
    code, _, err = _cli(capsys, *args, "--tiles", "4")
    assert code == 0, err
    report = json.loads((tmp_path / "probe-random-init.json").read_text())
    assert report["settings"]["tiles"] == 4 and report["layers"]["block2"]["feature_shape"][1:] == [8, 8]
    code, _, err = _cli(capsys, *args, "--tiles", "3")
    assert code == 2 and "--tiles 3 does not divide 32x32" in err and len(err.strip().splitlines()) == 1
    mlp = [a if a != "knn" else "mlp" for a in args] + ["--set", "epochs=1", "--flip", "--tiles", "2"]
    code, _, err = _cli(capsys, *mlp)
    assert code == 0, err
    report = json.loads((tmp_path / "probe-random-init.json").read_text())
    assert report["settings"]["flip"] and "flip augmentation" in report["features"]
    code, _, err = _cli(capsys, *mlp, "--augment")
    assert code == 2 and "--flip applies to cached features" in err


def test_cached_flip_draws_each_training_sample_from_the_image_or_its_mirror():
    from sslkit.probes.features import CachedFeatures

    plain, mirrored = torch.zeros(64, 3), torch.ones(64, 3)
    src = CachedFeatures(plain, mirrored)
    idx = torch.arange(64)
    got = src.batch(idx, torch.Generator().manual_seed(0), train=True)
    assert set(got[:, 0].tolist()) == {0.0, 1.0} and (got == got[:, :1]).all()  # whole samples, both kinds
    again = src.batch(idx, torch.Generator().manual_seed(0), train=True)
    assert torch.equal(got, again)  # seeded by the training loop's generator
    assert torch.equal(src.batch(idx, None, train=False), plain)  # evaluation: the images as they are
    with pytest.raises(ValueError, match="Generator"):
        src.batch(idx, None, train=True)


def test_probe_flip_extracts_the_mirrored_training_split_once(plugins, monkeypatch):
    from sslkit.data.augment import normalize

    trunk = load_trunk(None, plugins, random_init=True, backbone="nin", backbone_options={"width": 0.1})
    settings = ProbeSettings(
        labels_per_class=20, device="cpu", max_steps=2, options={"epochs": 1}, layers=("block2",), flip=True
    )
    splits = load_splits("sample", None, plugins, settings)
    calls = []
    real = evaluation.extract
    monkeypatch.setattr(evaluation, "extract", lambda *a, **k: calls.append((len(a[1]), a[8])) or real(*a, **k))
    cache: evaluation.FeatureCache = {}
    report = evaluation.run_probes(trunk, splits, plugins, settings, feature_cache=cache)
    assert sorted(calls) == sorted(
        [(len(splits.train), False), (len(splits.train), True), (len(splits.val), False), (len(splits.test), False)]
    )
    assert "flip augmentation" in report["features"]
    mirrored = cache[("train-mirrored", "block2", 1, "fp32")]
    with torch.no_grad():
        x = normalize(splits.train.images[:4].flip(-1), *splits.train.stats())
        torch.testing.assert_close(mirrored[:4], trunk.backbone.eval()(x, ["block2"])["block2"], atol=1e-4, rtol=1e-4)
    calls.clear()
    knn = settings.model_copy(update={"probe": "knn", "options": {}})
    assert "no augmentation" in evaluation.run_probes(trunk, splits, plugins, knn, feature_cache=cache)["features"]
    assert calls == []  # kNN trains nothing: the cached unflipped features serve it
    with pytest.raises(ConfigError, match="--flip applies to cached features"):
        evaluation.run_probes(trunk, splits, plugins, settings.model_copy(update={"augment": True}))


def test_features_are_read_at_the_runs_training_precision(plugins, tmp_path):
    """precision auto: a bf16 run's trunk is read under bf16 autocast (features stored as float32),
    close to the fp32 pass; --precision fp32 overrides it."""
    from sslkit.config import assemble
    from sslkit.engine.trainer import train

    sets = ["backbone.blocks=3", "backbone.width=0.1", "data.subset=64", "data.batch_size=32", "precision=bf16"]
    train(assemble("rotation", plugins, sets=sets, flags={"epochs": 1, "device": "cpu"}), tmp_path, plugins=plugins)
    trunk = load_trunk(tmp_path, plugins)
    settings = ProbeSettings(probe="knn", layers=("block2",), labels_per_class=10, device="cpu")
    splits = load_splits("sample", None, plugins, settings)
    caches: dict[str, evaluation.FeatureCache] = {"auto": {}, "fp32": {}}
    for precision, cache in caches.items():
        report = evaluation.run_probes(
            trunk, splits, plugins, settings.model_copy(update={"precision": precision}), feature_cache=cache
        )
        assert ("bf16 autocast" in report["features"]) == (precision == "auto")
    bf16, fp32 = caches["auto"][("test", "block2", 1, "bf16")], caches["fp32"][("test", "block2", 1, "fp32")]
    assert bf16.dtype == fp32.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16 - fp32).norm() / fp32.norm() < 0.05


def test_the_normalised_linear_probe_trains_on_features_of_any_scale():
    """A random-init NIN's block4 features vary by ~1e-6: BatchNorm's fixed eps zeroed them and
    the linear probe stayed at chance (12.5% where kNN gets 30%). Scaled by 1e-7, features now
    give the same probe outputs as at scale 1."""
    import torch

    from sslkit.probes.heads import LinearConfig, LinearProbe

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, 4, 4, generator=gen) + torch.randn(1, 16, 1, 1, generator=gen)
    outputs = []
    for scale in (1.0, 1e-7):
        torch.manual_seed(0)
        probe = LinearProbe(LinearConfig(norm=True), (16, 4, 4), 10).train()
        outputs.append(probe(x * scale).detach())
        probe.eval()
        outputs.append(probe(x * scale).detach())
    torch.testing.assert_close(outputs[0], outputs[2], rtol=1e-4, atol=1e-4)  # training mode
    torch.testing.assert_close(outputs[1], outputs[3], rtol=1e-3, atol=1e-3)  # running statistics
    assert outputs[0].std() > 0.1  # not the ~0 of a swamped BatchNorm
