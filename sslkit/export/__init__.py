"""Getting an encoder out of sslkit: ONNX (verified, self-describing), plain PyTorch weights, or
safetensors (weights plus the run's description in the file's metadata).

``export_onnx(run, "encoder.onnx", layer="block2")`` and ``export_torch(run, "backbone.pt")``;
the ONNX file runs without PyTorch through :mod:`sslkit.deploy`.
"""

from .onnx import ExportResult, export_encoder, export_onnx
from .safetensors_export import SafetensorsExport, export_safetensors, load_safetensors
from .torch_weights import TorchExport, export_torch

__all__ = [
    "ExportResult",
    "SafetensorsExport",
    "TorchExport",
    "export_encoder",
    "export_onnx",
    "export_safetensors",
    "export_torch",
    "load_safetensors",
]
