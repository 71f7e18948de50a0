"""Registers sslkit's built-in backbones (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_backbones(register):
    from .alexnet import AlexNet
    from .nin import NetworkInNetwork
    from .resnet import ResNet18
    from .timm_adapter import PREFIX, TimmBackbone

    register("alexnet", AlexNet)
    register("nin", NetworkInNetwork)
    register("resnet18", ResNet18)
    # A family: the registry resolves "timm/<model>" through TimmBackbone.variant (timm is optional).
    register(PREFIX, TimmBackbone)
