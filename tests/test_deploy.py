"""Inference without torch: sslkit.deploy, `sslkit embed`, `sslkit neighbors`, a second runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from sslkit import create_backbone, deploy
from sslkit.cli import main
from sslkit.data.augment import normalize
from sslkit.deploy import OnnxEncoder
from sslkit.errors import DeployError
from sslkit.export import export_encoder
from sslkit.retrieval import cosine_neighbors
from sslkit.run import Encoder

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(scope="module")
def backbone(plugins):
    torch.manual_seed(0)
    return create_backbone("nin", plugins, blocks=3, width=0.1).eval()


@pytest.fixture(scope="module")
def encoder_file(backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "encoder.onnx"
    export_encoder(
        backbone,
        out,
        layer="block2",
        input_shape=(3, 32, 32),
        mean=MEAN,
        std=STD,
        task="rotation",
        config={"backbone": {"name": "nin"}},
    )
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six images (one not square, one grey-scale, one 32x32 in a sub-folder) and a broken file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    for i, (size, mode) in enumerate(
        [((32, 32), "RGB"), ((48, 40), "RGB"), ((32, 32), "L"), ((64, 64), "RGB"), ((32, 32), "RGB")]
    ):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / f"img{i}.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "sub" / "img5.jpg", quality=95)
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def _torch_features(backbone, files):
    """The PyTorch path: PIL decode (as sslkit's folder loader) -> normalise -> encoder."""
    from sslkit.data.folders import _decode

    x = torch.from_numpy(np.stack([_decode(f, 32) for f in files]))
    with torch.no_grad():
        return Encoder(backbone, "block2").eval()(normalize(x, MEAN, STD)).numpy()


def test_encoder_reads_metadata_and_embeds(encoder_file, backbone, images):
    enc = OnnxEncoder(encoder_file, provider="cpu")
    assert enc.provider == "CPUExecutionProvider"
    assert enc.info.input_shape == (3, 32, 32) and enc.info.mean == MEAN and enc.info.layer == "block2"
    files = sorted(images.rglob("img*"))
    result = enc.embed_files([*files, images / "broken.jpg"], batch_size=4)
    assert result.files == files and result.skipped == [images / "broken.jpg"]
    assert result.embeddings.shape == (6, 19) and result.embeddings.dtype == np.float32
    np.testing.assert_allclose(result.embeddings, _torch_features(backbone, files), rtol=1e-4, atol=1e-5)


def test_deploy_runs_with_torch_blocked(encoder_file, backbone, images):
    code = f"""
import json, sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
from sslkit.deploy import OnnxEncoder, list_images
enc = OnnxEncoder({str(encoder_file)!r})
res = enc.embed_files(list_images([{str(images)!r}]))
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
print(json.dumps({{"provider": enc.provider, "files": [str(f) for f in res.files], "emb": res.embeddings.tolist()}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no onnxruntime complaints about CUDA libraries on a CPU machine
    out = json.loads(proc.stdout)
    files = sorted(images.rglob("img*"))
    assert out["files"] == [str(f) for f in files]
    if out["provider"] == "CPUExecutionProvider":
        np.testing.assert_allclose(np.array(out["emb"]), _torch_features(backbone, files), rtol=1e-4, atol=1e-5)


def test_missing_corrupt_and_foreign_files(tmp_path, encoder_file):
    with pytest.raises(DeployError, match="no encoder file"):
        OnnxEncoder(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(encoder_file.read_bytes()[:500])
    with pytest.raises(DeployError, match="cannot load") as err:
        OnnxEncoder(tmp_path / "bad.onnx")
    assert "\n" not in str(err.value)
    import onnx

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10),
        tmp_path / "plain.onnx",
    )
    with pytest.raises(DeployError, match="not an sslkit encoder"):
        OnnxEncoder(tmp_path / "plain.onnx")
    with pytest.raises(DeployError, match="not in this onnxruntime build"):
        OnnxEncoder(encoder_file, provider="NoSuchExecutionProvider")


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_cli_embed_and_neighbors(encoder_file, images, tmp_path, capsys):
    out = tmp_path / "emb" / "e.npy"
    code, _, err = _cli(capsys, "embed", encoder_file, images, "-o", out, "--batch-size", "4")
    assert code == 0 and "skipped 1 unreadable" in err and "broken.jpg" in err
    emb = np.load(out)
    files = (tmp_path / "emb" / "e.files.txt").read_text().splitlines()
    assert not list((tmp_path / "emb").glob(".*"))  # no lock file, no temporary file left
    meta = json.loads((tmp_path / "emb" / "e.json").read_text())
    assert emb.shape == (6, 19) and len(files) == 6 and "sub/img5.jpg" in files
    assert meta["skipped"] == [str(images / "broken.jpg")]
    # auto mode: whichever provider ran (CUDA on a GPU host) is the one recorded and printed.
    assert meta["provider"] in ort.get_available_providers() and f"on {meta['provider']}" in err

    png = tmp_path / "nn.png"
    code, _, err = _cli(
        capsys, "neighbors", out, images / "img0.png", "--random", "2", "--neighbors", "3", "-o", png, "--tile", "32"
    )
    assert code == 0 and "3 queries x 3 neighbours" in err
    with Image.open(png) as im:
        assert im.size == (4 + 36 * 4 + 12, 4 + 50 * 3)
    assert not any(line.startswith("img0.png: img0.png") for line in err.splitlines())  # itself excluded


def test_cli_one_line_errors(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    for model in (tmp_path / "bad.onnx", tmp_path / "missing.onnx"):
        code, _, err = _cli(capsys, "embed", model, tmp_path, "-o", tmp_path / "e.npy")
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "e.npy").exists()


def test_cosine_neighbors_order_and_exclusion():
    coll = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    idx, sims = cosine_neighbors(coll, coll[[0]], k=2, exclude=[0])
    assert idx.tolist() == [[1, 2]] and sims[0, 0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    idx, _ = cosine_neighbors(coll, np.array([[0, 2]], np.float32), k=10)
    assert idx.tolist() == [[2, 1, 0, 3]]


def test_opencv_loads_the_same_file(encoder_file):
    """A second, independent runtime (OpenCV's dnn module) gives the same features."""
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(1).standard_normal((7, 3, 32, 32)).astype(np.float32)
    net = cv2.dnn.readNetFromONNX(str(encoder_file))
    net.setInput(x)
    have = net.forward()
    want = OnnxEncoder(encoder_file, provider="cpu")(x)
    assert have.shape == want.shape
    assert np.abs(have - want).max() / np.abs(want).max() < 1e-4


# ---------------------------------------------------------------------------------------------
# Providers: what is asked for, what starts, what is reported


def test_reported_provider_is_the_one_that_runs(encoder_file):
    enc = OnnxEncoder(encoder_file)  # auto: CUDA on a GPU host, the CPU here
    assert enc.provider == enc.session.get_providers()[0] == enc.report.provider
    assert enc.device == ("cuda" if enc.provider in deploy.GPU_PROVIDERS else "cpu")


@pytest.fixture
def no_gpu_here():
    if deploy.cuda_device_present():
        pytest.skip("this machine has an NVIDIA GPU (tests/test_cuda.py covers it)")


def test_cuda_without_a_gpu_is_one_line_error_and_auto_says_cpu(no_gpu_here, encoder_file, images, tmp_path, capsys):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    code, _, err = _cli(capsys, "embed", encoder_file, images, "-o", tmp_path / "e.npy", "--provider", "cuda")
    assert (
        code == 2
        and err.startswith("error: --provider cuda: CUDAExecutionProvider did not start (")
        and err.count("\n") == 1
    )
    assert "libcuda.so" in err and "use --provider cpu" in err  # the cause and the fix
    assert not (tmp_path / "e.npy").exists()
    code, _, err = _cli(capsys, "embed", encoder_file, images, "-o", tmp_path / "e.npy", "--provider", "auto")
    assert code == 0 and "on CPUExecutionProvider (no NVIDIA GPU found)" in err
    code, _, err = _cli(capsys, "embed", encoder_file, images, "--provider", "gpu")
    assert code == 2 and "'gpu' is not one of" in err


def test_cuda_path_preloads_libraries_and_warns_on_fallback(encoder_file, monkeypatch, caplog):
    """auto on a machine that has a GPU: preload_dlls before the session, the fallback is one warning line."""
    calls: list[str] = []
    real_session = ort.InferenceSession
    monkeypatch.setattr(deploy, "cuda_device_present", lambda: True)
    monkeypatch.setattr(deploy, "tensorrt_present", lambda: False)
    monkeypatch.setattr(deploy.ort, "preload_dlls", lambda *a, **k: calls.append("preload"), raising=False)

    def session(path, sess_options=None, providers=None):
        calls.append("session " + ",".join(p[0] if isinstance(p, tuple) else p for p in providers))
        return real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])  # CUDA "did not start"

    monkeypatch.setattr(deploy.ort, "InferenceSession", session)
    monkeypatch.setattr(
        deploy.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    with caplog.at_level("WARNING", logger="sslkit.deploy"):
        enc = OnnxEncoder(encoder_file)
    assert calls == ["preload", "session CUDAExecutionProvider,CPUExecutionProvider"]
    assert enc.provider == "CPUExecutionProvider" and enc.report.fallback is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CUDAExecutionProvider did not start" in warnings[0] and "\n" not in warnings[0]
    with pytest.raises(DeployError, match=r"^--provider cuda: CUDAExecutionProvider did not start") as err:
        OnnxEncoder(encoder_file, provider="cuda")
    assert "\n" not in str(err.value)
    calls.clear()
    OnnxEncoder(encoder_file, provider="cpu")
    assert calls == ["session CPUExecutionProvider"]  # no CUDA libraries loaded for the CPU


def test_auto_takes_cuda_and_tensorrt_only_when_asked(monkeypatch):
    """TensorRT builds an engine per input shape: auto used to take it whenever libnvinfer loaded."""
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(deploy, "tensorrt_present", lambda: True)
    assert deploy._resolve("auto", everything, True) == (everything[1:], True)
    assert deploy._resolve("auto", everything, False) == (["CPUExecutionProvider"], True)  # no GPU: do not even try
    assert deploy._resolve("tensorrt", everything, True) == (everything, False)
    assert deploy._resolve("auto", everything[2:], True) == (["CPUExecutionProvider"], True)


def test_device_id_reaches_the_gpu_providers(encoder_file, monkeypatch, capsys):
    """The GPU was always ordinal 0; --device-id picks another one the process can see."""
    seen: list = []
    real_session = ort.InferenceSession
    monkeypatch.setattr(deploy, "cuda_device_present", lambda: True)
    monkeypatch.setattr(deploy.ort, "preload_dlls", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(
        deploy.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )

    def session(path, sess_options=None, providers=None):
        seen.append(providers)
        return real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(deploy.ort, "InferenceSession", session)
    OnnxEncoder(encoder_file, device_id=1)
    assert seen[-1] == [("CUDAExecutionProvider", {"device_id": 1}), ("CPUExecutionProvider", {})]
    assert deploy._provider_options("TensorrtExecutionProvider", 2)["device_id"] == 2
    with pytest.raises(DeployError, match="device id -1"):
        OnnxEncoder(encoder_file, device_id=-1)


def test_cli_device_id_is_passed_on(encoder_file, images, tmp_path, capsys, monkeypatch):
    ids: list[int] = []
    real = deploy.start_session
    monkeypatch.setattr(
        deploy, "start_session", lambda p, prov, threads, device_id: ids.append(device_id) or real(p, "cpu", threads)
    )
    code, _, err = _cli(capsys, "embed", encoder_file, images, "-o", tmp_path / "e.npy", "--device-id", "3")
    assert code == 0, err
    code, _, err = _cli(capsys, "embed", encoder_file, images, "-o", tmp_path / "e.npy", "--device-id", "-1")
    assert code == 2 and ids == [3]


def test_tensorrt_pads_a_smaller_batch_to_the_engine_batch(encoder_file, monkeypatch):
    """The last partial batch of an embed used to rebuild TensorRT's engine for its new shape."""
    enc = OnnxEncoder(encoder_file, provider="cpu")
    monkeypatch.setattr(OnnxEncoder, "provider", property(lambda self: deploy.TENSORRT))
    monkeypatch.setattr(OnnxEncoder, "device", property(lambda self: "cpu"))
    shapes: list[int] = []
    real_run = enc.session.run

    class Session:
        def run(self, names, feeds):
            shapes.append(len(next(iter(feeds.values()))))
            return real_run(names, feeds)

    enc.session = Session()  # type: ignore[assignment]
    x = np.random.default_rng(3).standard_normal((5, 3, 32, 32)).astype(np.float32)
    full, tail = enc(x[:4]), enc(x[4:])
    assert shapes == [4, 4] and full.shape == (4, 19) and tail.shape == (1, 19)
    np.testing.assert_allclose(tail, real_run(None, {enc.info.input_name: x[4:]})[0], rtol=1e-5, atol=1e-6)


def test_cpu_onnxruntime_replacing_the_gpu_build_is_named(encoder_file, monkeypatch):
    versions = {"onnxruntime-gpu": "1.31.1", "onnxruntime": None}
    monkeypatch.setattr(deploy, "_installed", versions.get)
    monkeypatch.setattr(deploy.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(
        DeployError, match="plain onnxruntime replaced its files; fix: pip uninstall -y onnxruntime onnxruntime-gpu"
    ):
        OnnxEncoder(encoder_file, provider="cuda")
    monkeypatch.setattr(deploy, "cuda_device_present", lambda: True)
    enc = OnnxEncoder(encoder_file)  # auto on a GPU machine: runs, and says why not on the GPU
    assert enc.provider == "CPUExecutionProvider" and "replaced its files" in enc.report.fallback
    versions["onnxruntime"] = "1.31.1"
    assert "both onnxruntime 1.31.1 and onnxruntime-gpu 1.31.1" in deploy.gpu_build_problem(
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    versions["onnxruntime-gpu"] = None
    assert deploy.gpu_build_problem(["CPUExecutionProvider"]) is None  # plain CPU install: nothing wrong


def test_io_binding_gives_the_same_features(encoder_file):
    enc = OnnxEncoder(encoder_file, provider="cpu")
    x = np.random.default_rng(2).standard_normal((5, 3, 32, 32)).astype(np.float32)
    bound = enc.run_on_device(ort.OrtValue.ortvalue_from_numpy(x, enc.device, 0))
    assert bound.device_name().lower() == enc.device
    np.testing.assert_array_equal(bound.numpy(), enc.session.run(None, {enc.info.input_name: x})[0])


def test_fp16_export_on_the_cpu_warns(backbone, tmp_path, caplog):
    path = tmp_path / "half.onnx"
    export_encoder(backbone, path, layer="block2", input_shape=(3, 32, 32), mean=MEAN, std=STD, fp16=True)
    with caplog.at_level("WARNING", logger="sslkit.deploy"):
        enc = OnnxEncoder(path, provider="cpu")
    assert enc.info.dtype == "float16" and any(
        "float16 export running on the CPU" in r.getMessage() for r in caplog.records
    )
    assert enc(np.zeros((2, 3, 32, 32), np.float32)).dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Listing and streaming


def test_list_images_survives_symlink_loops(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "3.png")
    (tmp_path / "sub" / "loop").symlink_to("..")
    assert len(deploy.list_images([tmp_path])) == 4  # each image once (the loop used to repeat the tree)
    (tmp_path / "up").symlink_to(".")  # a second loop used to make the walk endless
    assert len(deploy.list_images([tmp_path])) == 4
    with pytest.raises(DeployError, match="no such image file or folder"):
        deploy.list_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployError, match="no images in folder"):
        deploy.list_images([tmp_path / "empty"])


class _Stop(Exception):
    pass


def test_embed_to_disk_resumes_where_it_stopped(encoder_file, images, tmp_path):
    from sslkit.embed_stream import embed_to_disk, open_images, partial_paths
    from sslkit.retrieval import load_collection

    enc = OnnxEncoder(encoder_file, provider="cpu")
    source = open_images([images])  # 6 images and a broken one, in batches of 2
    whole = embed_to_disk(enc, source, tmp_path / "whole.npy", batch_size=2)
    seen: list[int] = []

    def stop_after_two_batches(done: int, total: int) -> None:
        seen.append(done)
        if done >= 4:
            raise _Stop

    out = tmp_path / "part" / "e.npy"
    with pytest.raises(_Stop):
        embed_to_disk(enc, source, out, batch_size=2, progress=stop_after_two_batches)
    rows, state = partial_paths(out)
    assert rows.is_file() and state.is_file() and not out.exists()
    assert json.loads(state.read_text())["next"] == 4  # the rows of 2 batches are on disk, counted
    seen.clear()
    again = embed_to_disk(enc, source, out, batch_size=2, progress=lambda d, t: seen.append(d))
    assert again.resumed_at == 4 and seen[0] == 4 and seen[-1] == 7 and not rows.exists() and not state.exists()
    a, b = load_collection(whole.paths[0]), load_collection(out)
    assert a.files == b.files and len(b.files) == 6 and again.skipped == [str(images / "broken.jpg")]
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_allclose(b.embeddings, enc.embed_files(b.files).embeddings, rtol=1e-6)


def test_embed_to_disk_starts_over_on_other_inputs(encoder_file, images, tmp_path):
    from sslkit.embed_stream import FileImages, embed_to_disk, open_images

    enc = OnnxEncoder(encoder_file, provider="cpu")
    source = open_images([images])

    def stop(done: int, total: int) -> None:
        if done >= 2:
            raise _Stop

    with pytest.raises(_Stop):
        embed_to_disk(enc, source, tmp_path / "e.npy", batch_size=2, progress=stop)
    fewer = FileImages(source.files[:5])
    assert embed_to_disk(enc, fewer, tmp_path / "e.npy", batch_size=2).resumed_at == 0
    with pytest.raises(_Stop):
        embed_to_disk(enc, source, tmp_path / "f.npy", batch_size=2, progress=stop)
    assert embed_to_disk(enc, source, tmp_path / "f.npy", batch_size=2, restart=True).resumed_at == 0
    with pytest.raises(DeployError, match="give a .npy file name"):
        embed_to_disk(enc, source, tmp_path / "e.txt")


def test_cli_embed_reads_a_packed_store(encoder_file, images, tmp_path, capsys):
    store = pytest.importorskip("sslkit.data.store")
    folder = tmp_path / "pics"
    folder.mkdir()
    for f in sorted(images.rglob("img*")):
        Image.open(f).convert("RGB").save(folder / f"{f.stem}.png")
    store.pack(folder, tmp_path / "store", encoding="raw", workers=0)
    code, _, err = _cli(capsys, "embed", encoder_file, tmp_path / "store", "-o", tmp_path / "s.npy")
    assert code == 0 and "(store " in err, err
    emb = np.load(tmp_path / "s.npy")
    names = (tmp_path / "s.files.txt").read_text().splitlines()
    assert emb.shape == (6, 19) and sorted(Path(n).name for n in names) == sorted(
        f"{f.stem}.png" for f in images.rglob("img*")
    )
    direct = OnnxEncoder(encoder_file, provider="cpu").embed_files([folder / Path(n).name for n in names]).embeddings
    np.testing.assert_allclose(emb, direct, rtol=1e-5, atol=1e-6)


def test_docs_example_runs(tmp_path):
    """docs/deploy.md shows examples/deploy_encoder.py: it runs as written, in an empty folder."""
    script = Path(__file__).resolve().parent.parent / "examples" / "deploy_encoder.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "runs on " in proc.stdout and "wrote embeddings.npy 6 rows" in proc.stdout
