"""Any timm model as an sslkit backbone: ``--backbone timm/<model_name>`` (``pip install "sslkit[timm]"``).

The family is registered once under the name ``timm/``; the registry resolves ``timm/resnet18``
through :meth:`TimmBackbone.variant`, so the ~1,000 timm architectures are never registered one
by one. The stages are timm's own ``features_only`` stages (``feature_info``: the module each
feature map comes from, its channels and its reduction), named after those modules
(``act1``, ``layer1`` ... for ResNets; dots become underscores).

timm returns the features of a ``features_only`` model by running its top-level modules in order
and picking some outputs; sslkit cuts that same chain into one block per stage, so asking for a
shallow stage does not run the deep ones, and the weights are ordinary sslkit backbone weights.
Models whose features are not such a chain (timm's hook- or getter-based feature wrappers, e.g.
most vision transformers) run whole and return the stages asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field
from torch import Tensor, nn

from ..errors import PluginError, UnknownNameError
from ..interfaces import Backbone, Config, Stage
from ..registry import suggest

PREFIX = "timm/"
INSTALL = 'pip install "sslkit[timm]"'


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise PluginError(f"timm backbones need the timm package: {INSTALL}") from None
    return timm


def timm_available() -> str | None:
    """timm's version when it is importable, else None (for ``sslkit plugins``)."""
    try:
        import timm
    except ImportError:
        return None
    return str(timm.__version__)


class TimmConfig(Config):
    pretrained: bool = Field(False, description="start from timm's published weights (downloads them: needs network)")
    in_chans: int = Field(3, ge=1, description="input image channels")
    out_indices: tuple[int, ...] | None = Field(
        None, description="which of timm's feature levels become stages (default: all)"
    )
    image_size: int | None = Field(
        None, ge=8, le=4096, description="input size the model is built for (a ViT's img_size; default: the run's)"
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="more keyword arguments for timm.create_model (e.g. drop_path_rate)"
    )


def _stage_name(module: str) -> str:
    return module.replace(".", "_")


def _chain_blocks(features: nn.Module, modules: Sequence[str]) -> OrderedDict[str, nn.Sequential] | None:
    """Cut timm's ordered feature modules into one block per stage, or None if they are not a chain."""
    from timm.models._features import FeatureDictNet

    if not isinstance(features, FeatureDictNet):
        return None
    blocks: OrderedDict[str, nn.Sequential] = OrderedDict()
    pending: OrderedDict[str, nn.Module] = OrderedDict()
    remaining = list(modules)
    for name, module in features.items():
        pending[name] = module
        if remaining and name == remaining[0]:
            blocks[_stage_name(remaining.pop(0))] = nn.Sequential(pending)
            pending = OrderedDict()
    return blocks if not remaining else None


def _create(timm: Any, name: str, kwargs: dict[str, Any], image_size: int | None) -> Any:
    """``timm.create_model`` at ``image_size`` where the model takes one (vision transformers'
    ``img_size``; convolutional nets take any size and refuse the keyword)."""
    try:
        if image_size is not None:
            try:
                return timm.create_model(name, img_size=image_size, **kwargs)
            except TypeError as exc:
                if "img_size" not in str(exc):
                    raise
        return timm.create_model(name, **kwargs)
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:  # e.g. no features_only support
        first = (str(exc).strip().splitlines() or [""])[0]
        raise PluginError(
            f"timm cannot build '{name}' with features_only=True ({first}); choose another model"
        ) from None


class TimmBackbone(Backbone):
    """A timm model's ``features_only`` trunk; build one with ``sslkit.create_backbone("timm/NAME")``."""

    Config = TimmConfig
    model_name: ClassVar[str] = ""

    @classmethod
    def variant(cls, model_name: str) -> type[TimmBackbone]:
        """The backbone class for ``timm/<model_name>`` (the registry's family lookup)."""
        timm = _timm()
        if not timm.is_model(model_name):
            known = timm.list_models()
            raise UnknownNameError(
                f"unknown timm model '{model_name}'{suggest(model_name, known)}; "
                "list them with python -c \"import timm; print(timm.list_models('resnet*'))\""
            )
        return type(f"Timm_{model_name.replace('.', '_')}", (cls,), {"model_name": model_name, "__module__": __name__})

    @classmethod
    def list_variants(cls, pattern: str = "*") -> list[str]:
        """timm model names matching a shell glob (``resnet1*``), for ``sslkit.list_backbones("timm/resnet1*")``."""
        return list(_timm().list_models(pattern))

    def __init__(self, config: TimmConfig) -> None:
        super().__init__(config)
        if not self.model_name:
            raise PluginError(f"build timm backbones by name: sslkit.create_backbone('{PREFIX}resnet18')")
        timm = _timm()
        kwargs: dict[str, Any] = {
            **config.kwargs,
            "pretrained": config.pretrained,
            "in_chans": config.in_chans,
            "features_only": True,
        }
        if config.out_indices is not None:
            kwargs["out_indices"] = config.out_indices
        features = _create(timm, self.model_name, kwargs, config.image_size)
        info = features.feature_info.get_dicts()
        modules = [d["module"] for d in info]
        self.stages = tuple(Stage(_stage_name(d["module"]), int(d["num_chs"]), int(d["reduction"])) for d in info)
        blocks = _chain_blocks(features, modules)
        if blocks is not None:
            self.blocks.update(blocks)
            self.features: nn.Module | None = None
        else:
            self.features = features

    def native_state_dict(self) -> dict[str, Tensor]:
        """The weights under timm's own key names: they load with ``strict=True`` into
        ``timm.create_model(name, num_classes=0)`` (the model without its classifier, which
        ``features_only`` drops too)."""
        if self.features is not None:
            raise PluginError(
                f"timm model '{self.model_name}' is not a chain of modules in sslkit (its features come from "
                "hooks): export sslkit's own key names (drop --native)"
            )
        # blocks.<stage>.<timm top-level module>.<rest> -> <timm top-level module>.<rest>
        return {key.split(".", 2)[2]: value for key, value in self.state_dict().items()}

    def forward(self, x: Tensor, stages: Sequence[str] | None = None) -> dict[str, Tensor]:
        if self.features is None:
            return super().forward(x, stages)
        wanted = [self.stage(n).name for n in (stages or [self.last_stage.name])]
        maps = self.features(x)
        maps = maps.values() if isinstance(maps, dict) else maps
        return {s.name: m for s, m in zip(self.stages, maps, strict=True) if s.name in wanted}
