"""The sslkit entry point of this package: the only module that touches the hook marker.

The import of the task stays inside the hook, so ``sslkit --help`` and plugin listing do not
pay for it until a registry is filled.
"""

from sslkit import hookimpl


@hookimpl
def register_pretext_tasks(register):
    from .task import JigsawPuzzle

    register("jigsaw", JigsawPuzzle)


@hookimpl
def register_recipes(register):
    from .recipes import RECIPES

    register("jigsaw-cifar10", RECIPES)
