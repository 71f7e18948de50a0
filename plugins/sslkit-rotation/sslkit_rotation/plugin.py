"""The sslkit entry point of this package: the only module that touches the hook marker."""

from sslkit import hookimpl


@hookimpl
def register_pretext_tasks(register):
    from .task import RotationPrediction

    register("rotation", RotationPrediction)


@hookimpl
def register_recipes(register):
    from .recipes import RECIPES

    register("rotnet-cifar10", RECIPES)
