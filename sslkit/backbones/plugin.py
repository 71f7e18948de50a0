"""Registers sslkit's built-in backbones (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_backbones(register):
    from .alexnet import AlexNet
    from .nin import NetworkInNetwork
    from .resnet import ResNet18

    register("alexnet", AlexNet)
    register("nin", NetworkInNetwork)
    register("resnet18", ResNet18)
