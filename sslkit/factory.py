"""One factory per kind: build a registered backbone, pretext task or probe by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import validate_section
from .errors import ConfigError

if TYPE_CHECKING:
    from .interfaces import Backbone, PretextTask, Probe
    from .plugins import Plugins


def _plugins(plugins: Plugins | None) -> Plugins:
    if plugins is not None:
        return plugins
    from .plugins import load_plugins

    return load_plugins()


def _name(name: object, kind: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a {kind} name must be a non-empty string (got {name!r}); see 'sslkit plugins'")
    return name


def create_backbone(name: str, plugins: Plugins | None = None, **options: Any) -> Backbone:
    """``create_backbone("nin", blocks=4, width=0.25)``: options are the backbone's Config."""
    cls = _plugins(plugins).backbones.get(_name(name, "backbone"))
    return cls(validate_section(cls.Config, options, "backbone."))


def build_backbone(spec: Mapping[str, Any], plugins: Plugins | None = None) -> Backbone:
    """A run config's ``backbone`` section (``{"name": ..., **options}``) -> a fresh backbone."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"a backbone section needs a 'name' (got {spec!r}), e.g. {{'name': 'nin', 'blocks': 4}}")
    return create_backbone(spec["name"], plugins, **{k: v for k, v in spec.items() if k != "name"})


def create_task(name: str, backbone: Backbone, plugins: Plugins | None = None, **options: Any) -> PretextTask:
    """``create_task("rotation", backbone, angles=[0, 180])``: builds the task's head for it."""
    cls = _plugins(plugins).tasks.get(_name(name, "pretext task"))
    return cls(validate_section(cls.Config, options, "task."), backbone)


def create_probe(
    name: str,
    feature_shape: tuple[int, ...],
    num_classes: int,
    plugins: Plugins | None = None,
    **options: Any,
) -> Probe:
    """``create_probe("mlp", (192, 8, 8), 10)``: a probe for features of that shape."""
    cls = _plugins(plugins).probes.get(_name(name, "probe"))
    return cls(validate_section(cls.Config, options, "probe."), feature_shape, num_classes)
