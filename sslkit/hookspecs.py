"""Every extension point of sslkit: one ``register_*(register)`` hook per kind of plugin.

A plugin is a module (found through the ``sslkit`` entry-point group) that implements any of
these hooks with :data:`sslkit.hookimpl`. Each hook receives a ``register`` callable; call it once
per thing the plugin provides. Built-in backbones, probes, datasets and loggers are registered
through the same hooks, so a first-party plugin looks exactly like a third party's::

    from sslkit import hookimpl

    @hookimpl
    def register_pretext_tasks(register):
        register("jigsaw", JigsawTask)
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("sslkit")
hookimpl = pluggy.HookimplMarker("sslkit")


@hookspec
def register_pretext_tasks(register):
    """Register pretext tasks: ``register(name, TaskClass)``, TaskClass a :class:`sslkit.PretextTask`."""


@hookspec
def register_backbones(register):
    """Register backbones: ``register(name, BackboneClass)``, a :class:`sslkit.Backbone` subclass."""


@hookspec
def register_probes(register):
    """Register probes: ``register(name, ProbeClass)``, a :class:`sslkit.Probe` subclass."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, loader)``, loader a :class:`sslkit.data.DatasetLoader`."""


@hookspec
def register_callbacks(register):
    """Register training callbacks, e.g. experiment loggers: ``register(name, CallbackClass)``, a
    :class:`sslkit.Callback` subclass built as ``CallbackClass(context)`` (a
    :class:`sslkit.engine.callbacks.RunContext`) when a run asks for it with ``--logger name``."""


@hookspec
def register_exporters(register):
    """Register encoder file formats: ``register(name, ExporterClass)``, a :class:`sslkit.Exporter`
    subclass; ``sslkit export RUN --format name`` and ``Run.export(format=name)`` use it."""


@hookspec
def register_recipes(register):
    """Register paper reproductions: ``register(name, {preset: Recipe})``, one
    :class:`sslkit.Recipe` per preset; ``sslkit reproduce name --preset P`` runs it."""
