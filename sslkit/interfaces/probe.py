"""The probe interface: a classifier on one stage of a frozen (or fine-tuned) trunk."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from .base import Config


class ProbeConfig(Config):
    """Training recipe every probe has; each probe's defaults are its paper's."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (20, 40, 45)
    gamma: float = 0.2
    # --finetune: the trunk trains too, at lr * finetune_lr_scale (the paper publishes no value).
    finetune_lr_scale: float = 0.1


class Probe(nn.Module):
    """A classifier trained on one frozen (or fine-tuned) stage of a backbone.

    Built from its config, the shape of one sample's features ``(C, H, W)`` and the number of
    classes; :meth:`forward` maps features [B, C, H, W] to logits [B, num_classes].

    A probe either trains by gradient descent (``trains = True``, the default: the probe engine
    runs SGD with the config's schedule) or is non-parametric (``trains = False``: it implements
    :meth:`fit`, called once with every training feature and label, e.g. kNN).
    """

    Config: ClassVar[type[ProbeConfig]] = ProbeConfig
    trains: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Probes written before ``trains`` existed marked themselves non-parametric by defining
        # fit(): keep them working unless they say otherwise.
        if "fit" in cls.__dict__ and "trains" not in cls.__dict__:
            cls.trains = False

    def __init__(self, config: ProbeConfig, feature_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.feature_shape = tuple(feature_shape)
        self.num_classes = num_classes

    def forward(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def fit(self, features: Tensor, labels: Tensor) -> None:
        """Non-parametric probes (``trains = False``): remember the training features [N, ...]
        and labels [N]."""
        raise NotImplementedError(f"{type(self).__name__} trains by gradient descent (trains = True): no fit()")
