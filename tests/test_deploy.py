"""Inference without torch: sslkit.deploy, `sslkit embed`, `sslkit neighbors`, a second runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit import create_backbone
from sslkit.cli import main
from sslkit.data.augment import normalize
from sslkit.deploy import OnnxEncoder
from sslkit.errors import DeployError
from sslkit.export import export_encoder
from sslkit.export.encoder import Encoder
from sslkit.retrieval import cosine_neighbors

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(scope="module")
def backbone(plugins):
    torch.manual_seed(0)
    return create_backbone("nin", plugins, blocks=3, width=0.1).eval()


@pytest.fixture(scope="module")
def encoder_file(backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "encoder.onnx"
    export_encoder(backbone, out, layer="block2", input_shape=(3, 32, 32), mean=MEAN, std=STD, task="rotation", config={"backbone": {"name": "nin"}})
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six images (one not square, one grey-scale, one 32x32 in a sub-folder) and a broken file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    for i, (size, mode) in enumerate([((32, 32), "RGB"), ((48, 40), "RGB"), ((32, 32), "L"), ((64, 64), "RGB"), ((32, 32), "RGB")]):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / f"img{i}.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "sub" / "img5.jpg", quality=95)
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def _torch_features(backbone, files):
    """The PyTorch path: PIL decode (as sslkit's folder loader) -> normalise -> encoder."""
    from sslkit.data.datasets import _decode

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
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10), tmp_path / "plain.onnx")
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
    meta = json.loads((tmp_path / "emb" / "e.json").read_text())
    assert emb.shape == (6, 19) and len(files) == 6 and "sub/img5.jpg" in files
    assert meta["skipped"] == [str(images / "broken.jpg")] and meta["provider"] == "CPUExecutionProvider"

    png = tmp_path / "nn.png"
    code, _, err = _cli(capsys, "neighbors", out, images / "img0.png", "--random", "2", "-k", "3", "-o", png, "--tile", "32")
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
