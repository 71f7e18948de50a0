"""Registers sslkit's built-in datasets (an entry point of the sslkit distribution)."""

from ..hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    from .builtin import load_cifar10, load_sample
    from .imagenet import load_imagenet

    register("cifar10", load_cifar10)
    register("sample", load_sample)
    register("imagenet", load_imagenet)  # returns a packed Store, not ImageData
