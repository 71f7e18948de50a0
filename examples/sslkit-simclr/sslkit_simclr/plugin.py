"""The sslkit entry point of this package: the only module that touches the hook marker."""

from sslkit import hookimpl


@hookimpl
def register_pretext_tasks(register):
    from .task import SimCLR

    register("simclr", SimCLR)


@hookimpl
def register_recipes(register):
    from .recipes import RECIPES

    register("simclr-cifar10", RECIPES)
