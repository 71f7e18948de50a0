"""Registers sslkit's built-in datasets (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    from .builtin import load_cifar10, load_sample

    register("cifar10", load_cifar10)
    register("sample", load_sample)
