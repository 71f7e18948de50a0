"""Registers sslkit's own reproductions (an entry point of the sslkit distribution): those that
need no single task plugin of their own, such as the mix of rotation and context."""

from ..hookspecs import hookimpl


@hookimpl
def register_recipes(register):
    from .multitask import NAME, RECIPES

    register(NAME, RECIPES)
