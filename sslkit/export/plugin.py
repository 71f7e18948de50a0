"""sslkit's built-in export formats, registered like a third party's (``register_exporters``)."""

from ..hookspecs import hookimpl


@hookimpl
def register_exporters(register):
    from .onnx import OnnxExporter
    from .safetensors_export import SafetensorsExporter
    from .torch_weights import TorchExporter

    register("onnx", OnnxExporter)
    register("torch", TorchExporter)
    register("safetensors", SafetensorsExporter)
