"""Export an encoder, then embed images with sslkit.deploy (numpy + onnxruntime, no torch).

Runs as is in an empty folder (tests/test_deploy.py runs it): a freshly initialised NIN stands in
for a trained run, so nothing needs downloading.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sslkit import create_backbone
from sslkit.export import export_encoder

# 1. Export (needs torch; `sslkit export RUN -o encoder.onnx` does the same for a trained run).
torch.manual_seed(0)
backbone = create_backbone("nin", blocks=3, width=0.25)
export_encoder(
    backbone,
    "encoder.onnx",
    layer="block2",
    input_shape=(3, 32, 32),
    mean=(0.49, 0.48, 0.45),
    std=(0.25, 0.24, 0.26),
    task="rotation",
)

# A few images to embed.
Path("photos").mkdir(exist_ok=True)
rng = np.random.default_rng(0)
for i in range(6):
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(f"photos/{i}.png")

# 2. Deploy (no torch from here on: this part runs on a machine with only onnxruntime).
from sslkit.deploy import OnnxEncoder, list_images  # noqa: E402

encoder = OnnxEncoder("encoder.onnx", provider="auto")  # "cuda" fails loudly if CUDA does not start
print("runs on", encoder.provider, "-", encoder.report.note or encoder.report.fallback or "GPU")
print("metadata:", encoder.info.layer, encoder.info.input_shape, encoder.info.mean)
result = encoder.embed_files(list_images(["photos"]), batch_size=4)
print("embeddings", result.embeddings.shape, "skipped", result.skipped)
assert result.embeddings.shape == (6, *encoder.info.output_shape)

# 3. Large collections: rows go to disk as they come, and a re-run resumes an interrupted one.
from sslkit.embed_stream import embed_to_disk, open_images  # noqa: E402

written = embed_to_disk(encoder, open_images(["photos"]), "embeddings.npy", batch_size=4)
print("wrote", written.paths[0], written.count, "rows")
assert np.allclose(np.load("embeddings.npy"), result.embeddings, atol=1e-6)
