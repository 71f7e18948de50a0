"""One factory per kind: build a registered backbone, pretext task or probe by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import validate_section

if TYPE_CHECKING:
    from .interfaces import Backbone, PretextTask, Probe
    from .plugins import Plugins


def _plugins(plugins: Plugins | None) -> Plugins:
    if plugins is not None:
        return plugins
    from .plugins import load_plugins

    return load_plugins()


def create_backbone(name: str, plugins: Plugins | None = None, **options: Any) -> Backbone:
    """``create_backbone("nin", blocks=4, width=0.25)``: options are the backbone's Config."""
    cls = _plugins(plugins).backbones.get(name)
    return cls(validate_section(cls.Config, options, "backbone."))


def create_task(name: str, backbone: Backbone, plugins: Plugins | None = None, **options: Any) -> PretextTask:
    """``create_task("rotation", backbone, angles=[0, 180])``: builds the task's head for it."""
    cls = _plugins(plugins).tasks.get(name)
    return cls(validate_section(cls.Config, options, "task."), backbone)


def create_probe(
    name: str,
    feature_shape: tuple[int, ...],
    num_classes: int,
    plugins: Plugins | None = None,
    **options: Any,
) -> Probe:
    """``create_probe("mlp", (192, 8, 8), 10)``: a probe for features of that shape."""
    cls = _plugins(plugins).probes.get(name)
    return cls(validate_section(cls.Config, options, "probe."), feature_shape, num_classes)
