"""Registers sslkit's built-in probes (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_probes(register):
    from .heads import ConvProbe, LinearProbe, MLPProbe
    from .knn import KNNProbe

    register("linear", LinearProbe)
    register("mlp", MLPProbe)
    register("conv", ConvProbe)
    register("knn", KNNProbe)
