"""Getting an encoder out of sslkit: ONNX (verified, self-describing) or plain PyTorch weights.

``export_onnx(run, "encoder.onnx", layer="block2")`` and ``export_torch(run, "backbone.pt")``;
the ONNX file runs without PyTorch through :mod:`sslkit.deploy`.
"""

from .onnx import ExportResult, export_encoder, export_onnx
from .torch_weights import TorchExport, export_torch

__all__ = ["ExportResult", "TorchExport", "export_encoder", "export_onnx", "export_torch"]
