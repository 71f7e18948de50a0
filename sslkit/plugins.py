"""Plugin discovery: built-in, entry-point and local plugins through one loading path.

:func:`load_plugins` imports every module of the ``sslkit`` entry-point group one at a time (the
built-in backbones, probes and datasets are entry points of the ``sslkit`` distribution itself),
then asks each plugin's ``register_*`` hooks what it provides. A plugin that fails to import,
implements a hook that does not exist (a misspelling) or raises (or calls ``sys.exit``) while
importing or registering is skipped with a warning that names it; the rest still load.

Two plugins registering the same name is a *conflict* (pytest's model): neither wins, both are
named in a warning on every command and in ``sslkit plugins``, commands that do not use the name
run as usual, and using it is a one-line error that says how to disable one of them. A name is
never silently renamed or overridden.

Selection (``SSLKIT_PLUGINS`` or ``sslkit --plugins``): a comma-separated list. ``-name``
disables a plugin; plain names load only those plugins (plus sslkit's built-ins); ``none``
loads only the built-ins. A name that is not an installed plugin is an error with a suggestion.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import MIX, Provider, Registry, suggest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sslkit"
ENV_VAR = "SSLKIT_PLUGINS"
HOOKS = {
    "register_pretext_tasks": "tasks",
    "register_backbones": "backbones",
    "register_probes": "probes",
    "register_datasets": "datasets",
    "register_callbacks": "callbacks",
    "register_exporters": "exporters",
    "register_recipes": "recipes",
}


@dataclass
class PluginRecord:
    """What happened to one plugin: ``loaded``, ``disabled`` or ``failed`` (with why)."""

    name: str
    distribution: str | None
    version: str | None
    status: str
    error: str | None = None


@dataclass(frozen=True)
class Selection:
    only: frozenset[str] | None  # None: every plugin
    disabled: frozenset[str]

    @classmethod
    def parse(cls, spec: str | None) -> Selection:
        if spec is None or not spec.strip():
            return cls(None, frozenset())
        only: set[str] = set()
        disabled: set[str] = set()
        names_only = False
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            if item == "none":
                names_only = True
            elif item.startswith("-") or item.startswith("no:"):
                disabled.add(item[1:] if item.startswith("-") else item[3:])
            else:
                only.add(item)
                names_only = True
        return cls(frozenset(only) if names_only else None, frozenset(disabled))

    def allows(self, name: str, builtin: bool) -> bool:
        if name in self.disabled:
            return False
        return builtin or self.only is None or name in self.only

    def check(self, installed: Sequence[str]) -> None:
        """Fail on a selected or disabled name that is not an installed plugin: a typo would
        otherwise load nothing (or disable nothing) without a word."""
        known = sorted(set(installed))
        for name in sorted((self.only or frozenset()) | self.disabled):
            if name not in known:
                raise PluginError(
                    f"--plugins/{ENV_VAR} names '{name}', which is not an installed plugin"
                    f"{suggest(name, known)}; installed plugins: {', '.join(known) or 'none'}"
                )


def _mix(name: str, tasks: Registry[Any]) -> Any:
    """The pretext task that trains the registered tasks of ``name`` ("rotation+context") at once."""
    from .tasks.composite import composite_class  # torch: imported only when a mix is asked for

    return composite_class(name, tasks)


@dataclass
class Plugins:
    """The loaded plugins and the registries they filled. Build with :func:`load_plugins`."""

    manager: pluggy.PluginManager
    records: list[PluginRecord] = field(default_factory=list)
    tasks: Registry[Any] = field(default_factory=lambda: Registry("pretext task", compose=_mix))
    backbones: Registry[Any] = field(default_factory=lambda: Registry("backbone"))
    probes: Registry[Any] = field(default_factory=lambda: Registry("probe"))
    datasets: Registry[Any] = field(default_factory=lambda: Registry("dataset"))
    callbacks: Registry[Any] = field(default_factory=lambda: Registry("logger"))
    exporters: Registry[Any] = field(default_factory=lambda: Registry("export format"))
    recipes: Registry[Any] = field(default_factory=lambda: Registry("reproduction"))

    def versions(self) -> dict[str, str]:
        """{plugin: 'distribution version'} of the loaded plugins, recorded in checkpoints."""
        return {r.name: f"{r.distribution or '-'} {r.version or '-'}" for r in self.records if r.status == "loaded"}

    def registries(self) -> list[Registry[Any]]:
        return [self.tasks, self.backbones, self.probes, self.datasets, self.callbacks, self.exporters, self.recipes]


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sslkit")
    pm.add_hookspecs(hookspecs)
    return pm


def _entry_points() -> list[md.EntryPoint]:
    eps = md.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: ep.name)


def _dist_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _check_hooks(pm: pluggy.PluginManager, plugin: object) -> str | None:
    """Why the plugin's hooks are unusable (a misspelt hook), or None."""
    known = sorted(HOOKS)
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.spec is None:
            return (
                f"implements unknown hook '{caller.name}'{suggest(caller.name, known)}; "
                f"sslkit hooks: {', '.join(known)}"
            )
    return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    try:
        message = str(exc)
    except Exception:  # third-party code: even an exception's __str__ may raise
        message = "(its message could not be printed)"
    return f"{type(exc).__name__}: {message}".replace("\n", " ")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise TypeError(f"invalid name {name!r}: use a non-empty string without surrounding spaces")


def _loaded(obj: Any) -> Callable[[], Any]:
    """The loader of a plugin object already in hand (``extra=``): it returns the object."""
    return lambda: obj


def _register(
    pm: pluggy.PluginManager,
    plugins: Plugins,
    name: str,
    load: Callable[[], object],
    dist: tuple[str | None, str | None],
) -> None:
    record = PluginRecord(name, dist[0], dist[1], "loaded")
    plugins.records.append(record)
    fix = f"fix or uninstall it, or disable it with {ENV_VAR}='-{name}'"
    try:
        module = load()
    except BaseException as exc:  # any import-time failure of third-party code, sys.exit() included
        if isinstance(exc, KeyboardInterrupt):
            raise
        record.status, record.error = "failed", f"failed to import: {_why(exc)}"
    else:
        if pm.get_plugin(name) is not None:
            record.status, record.error = "failed", "another plugin is already loaded under this name"
        else:
            try:
                pm.register(module, name=name)
            except Exception as exc:  # pluggy.PluginValidationError: bad hook signature
                record.status, record.error = "failed", f"invalid hook: {exc}"
            else:
                problem = _check_hooks(pm, module)
                if problem:
                    pm.unregister(module)
                    record.status, record.error = "failed", problem
    if record.error:
        log.warning("plugin '%s' was not loaded: %s; %s", name, record.error, fix)


def _check_registered(attr: str, name: object, obj: Any) -> None:
    """Raise ``TypeError`` naming what is wrong with one registration (the plugin is then skipped)."""
    from .interfaces import Backbone, Callback, Exporter, PretextTask, Probe, Recipe  # torch from here on

    _check_name(name)
    classes: dict[str, type] = {
        "tasks": PretextTask,
        "backbones": Backbone,
        "probes": Probe,
        "callbacks": Callback,
        "exporters": Exporter,
    }
    base = classes.get(attr)
    if base is not None and not (inspect.isclass(obj) and issubclass(obj, base)):
        raise TypeError(f"{name!r} is not a subclass of sslkit.{base.__name__}")
    if attr == "tasks" and isinstance(name, str) and MIX in name:
        raise TypeError(f"pretext task name {name!r}: '{MIX}' joins the tasks of a mix (rotation{MIX}context)")
    if attr == "datasets" and not callable(obj):
        raise TypeError(f"dataset {name!r} is not a callable loader")
    if attr == "recipes":
        presets = obj if isinstance(obj, Mapping) else {}
        if not presets or not all(isinstance(p, str) and isinstance(r, Recipe) for p, r in presets.items()):
            raise TypeError(f"reproduction {name!r} must be a non-empty {{preset: sslkit.Recipe}} mapping")
        wrong = [p for p, r in presets.items() if r.name != name or r.preset != p]
        if wrong:
            raise TypeError(f"reproduction {name!r}: the Recipe of preset {wrong[0]!r} names another recipe or preset")


def _collect(plugins: Plugins) -> None:
    """Ask each loaded plugin, one at a time, what it provides.

    A plugin's registrations from all its hooks are staged first and added only if none of its
    hooks raised and every object has the right type: a failing plugin registers nothing.
    """
    impls: dict[str, list[tuple[str, str, Any]]] = {}
    for hook_name, attr in HOOKS.items():
        for impl in getattr(plugins.manager.hook, hook_name).get_hookimpls():
            impls.setdefault(impl.plugin_name, []).append((hook_name, attr, impl))
    for record in plugins.records:
        if record.status != "loaded":
            continue
        staged: list[tuple[str, str, Any]] = []
        hook_name = ""
        try:
            # hook_name is read by the except clause below to name the hook that failed.
            for hook_name, attr, impl in impls.get(record.name, []):  # noqa: B007 -- used after the loop
                # Bind this record's list: a plugin that keeps `register` and calls it later
                # must not stage into another plugin's registrations.
                impl.function(register=lambda name, obj, _a=attr, _s=staged: _s.append((_a, name, obj)))
                for _, name, obj in (s for s in staged if s[0] == attr):
                    _check_registered(attr, name, obj)
        except BaseException as exc:  # third-party code: sys.exit() in a hook skips the plugin too
            if isinstance(exc, KeyboardInterrupt):
                raise
            record.status, record.error = "failed", f"{hook_name} failed: {_why(exc)}"
            log.warning(
                "plugin '%s' was not loaded: %s; fix or uninstall it, or disable it with %s='-%s'",
                record.name,
                record.error,
                ENV_VAR,
                record.name,
            )
            continue
        provider = Provider(record.name, record.distribution, record.version)
        for attr, name, obj in staged:
            getattr(plugins, attr).register(name, obj, provider)  # a duplicate becomes a conflict


def _warn_conflicts(plugins: Plugins) -> None:
    for registry in plugins.registries():
        for name in registry.conflicts():
            log.warning("%s", registry.conflict_message(name))


def _note_disabled(plugins: Plugins) -> None:
    """Tell each registry which plugins the selection disabled, so that an unknown name can say
    so (``--plugins -backbones`` leaves no backbones at all)."""
    disabled = [r for r in plugins.records if r.status == "disabled"]
    for attr in HOOKS.values():
        registry: Registry[Any] = getattr(plugins, attr)
        for r in disabled:
            # sslkit's built-in plugins are named after the registry they fill
            registry.disabled[r.name] = "built-in" if r.distribution == "sslkit" and r.name == attr else ""


def _local_name(obj: object) -> str:
    if isinstance(obj, str):
        return obj
    return getattr(obj, "__name__", None) or type(obj).__name__


def _load_all(
    pm: pluggy.PluginManager, plugins: Plugins, chosen: Selection, eps: list[md.EntryPoint], extra: Sequence[object]
) -> None:
    """Import every selected entry point, then the local plugins, one at a time (see module doc)."""
    for ep in eps:
        dist = _dist_of(ep)
        if not chosen.allows(ep.name, dist[0] == "sslkit"):
            plugins.records.append(PluginRecord(ep.name, dist[0], dist[1], "disabled"))
            continue
        _register(pm, plugins, ep.name, ep.load, dist)
    for obj in extra:
        name = _local_name(obj)
        if isinstance(obj, str):
            obj = importlib.import_module(obj)
        _register(pm, plugins, name, _loaded(obj), (None, None))


def load_plugins(
    selection: str | None = None,
    extra: Sequence[object] = (),
    *,
    entry_points: bool = True,
) -> Plugins:
    """Load plugins and fill the registries.

    ``selection`` defaults to ``$SSLKIT_PLUGINS``. ``extra`` are local plugins (modules or
    objects with hook implementations, e.g. defined in a test), loaded after the entry points
    through the same path. ``entry_points=False`` loads only ``extra`` (for isolated tests).
    """
    if selection is None:
        selection = os.environ.get(ENV_VAR)
    chosen = Selection.parse(selection)
    pm = make_plugin_manager()
    plugins = Plugins(manager=pm)
    eps = _entry_points() if entry_points else []
    chosen.check([ep.name for ep in eps] + [_local_name(obj) for obj in extra])
    # A plugin that prints while it loads must not corrupt what a command prints on stdout
    # (``sslkit plugins --json``): its output goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        _load_all(pm, plugins, chosen, eps, extra)
        _collect(plugins)
    _warn_conflicts(plugins)
    _note_disabled(plugins)
    failures = {r.name: r.error or "" for r in plugins.records if r.status == "failed"}
    for registry in plugins.registries():
        registry.load_failures.update(failures)
    return plugins
