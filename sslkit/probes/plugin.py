"""Registers sslkit's built-in probes (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_probes(register):
    from .heads import LinearProbe, MLPProbe

    register("linear", LinearProbe)
    register("mlp", MLPProbe)
