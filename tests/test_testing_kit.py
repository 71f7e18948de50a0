"""sslkit.testing catches broken plugins: each check fails, naming the plugin and the contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sslkit import hookimpl
from sslkit.interfaces import Backbone, Config, Loss, PretextTask, Stage, View
from sslkit.plugins import load_plugins
from sslkit.testing import ConformanceError, check_backbone, check_probe, check_task


class NetConfig(Config):
    channels: int = 8
    declared: int = 8


class Net(Backbone):
    """One conv stage; ``declared`` lets a test lie about its channels."""

    Config = NetConfig

    def __init__(self, config: NetConfig) -> None:
        super().__init__(config)
        self.blocks["conv"] = nn.Sequential(nn.Conv2d(3, config.channels, 3, padding=1), nn.ReLU())
        self.stages = (Stage("conv", config.declared, 1),)


class Unused(Net):
    def __init__(self, config: NetConfig) -> None:
        super().__init__(config)
        self.spare = nn.Linear(2, 2)  # never used in forward: DDP would fail


class FlipConfig(Config):
    classes: int = 2


class Flip(PretextTask):
    """A sound task (upside-down flip prediction); subclasses below break one contract each."""

    Config = FlipConfig

    def __init__(self, config: FlipConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(backbone.last_stage.channels, config.classes)
        )

    def labels(self, images, generator):
        return (torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5).long()

    def prepare(self, images, generator):
        y = self.labels(images, generator)
        return torch.where(y.bool()[:, None, None, None], images.flip(-2), images), y

    def forward(self, backbone, inputs):
        return self.head(backbone(inputs)[backbone.last_stage.name])


class GlobalRandom(Flip):
    def labels(self, images, generator):
        return torch.randint(0, 2, (images.shape[0],), device=images.device)  # ignores the generator


class OutOfRange(Flip):
    def labels(self, images, generator):
        return super().labels(images, generator) + 1  # labels 1..2 for 2 logits


class Frozen(Flip):
    def forward(self, backbone, inputs):
        return self.head(backbone(inputs)[backbone.last_stage.name]).detach() * 0 + self.bias

    def __init__(self, config, backbone):
        super().__init__(config, backbone)
        self.bias = nn.Parameter(torch.zeros(2), requires_grad=False)
        for p in [*self.parameters()]:
            p.requires_grad_(False)


class HiddenState(Flip):
    def __init__(self, config, backbone):
        super().__init__(config, backbone)
        self.scale = torch.rand(1).item() + 0.5  # a plain attribute: lost in a checkpoint

    def forward(self, backbone, inputs):
        return super().forward(backbone, inputs) * self.scale


class TwoViews(PretextTask):
    """A sound two-view task with an EMA target (the shape of BYOL): subclasses break one contract each."""

    def __init__(self, config, backbone):
        super().__init__(config, backbone)
        c = backbone.last_stage.channels
        self.projector = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 8))
        self.target = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 8)).requires_grad_(False)

    def views(self):
        return [View(count=2, jitter=0.8, grayscale=0.2)]

    def prepare(self, images, generator):
        return images, None

    def forward(self, backbone, inputs):
        name = backbone.last_stage.name
        return [self.projector(backbone(v)[name]) for v in inputs], [self.target(backbone(v)[name]) for v in inputs]

    def loss(self, outputs, targets):
        (p1, p2), (t1, t2) = outputs
        value = (2 - 2 * nn.functional.cosine_similarity(p1, t2.detach())).mean()
        value = value + (2 - 2 * nn.functional.cosine_similarity(p2, t1.detach())).mean()
        return Loss(value, {"std": nn.functional.normalize(p1.detach(), dim=1).std(0).mean()})

    @torch.no_grad()
    def after_step(self, backbone, step):
        for o, t in zip(self.projector.parameters(), self.target.parameters(), strict=True):
            t.mul_(0.9).add_(o, alpha=0.1)


class EmaInForward(TwoViews):
    def forward(self, backbone, inputs):
        if torch.is_grad_enabled():  # the workaround the interface makes unnecessary
            with torch.no_grad():
                for o, t in zip(self.projector.parameters(), self.target.parameters(), strict=True):
                    t.mul_(0.9).add_(o, alpha=0.1)
        return super().forward(backbone, inputs)


class CountsEvaluations(TwoViews):
    def __init__(self, config, backbone):
        super().__init__(config, backbone)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, backbone, inputs):
        self.calls += 1  # state advanced by every pass, evaluation included
        return super().forward(backbone, inputs)


class HoldsTheBackbone(TwoViews):
    def __init__(self, config, backbone):
        super().__init__(config, backbone)
        self.online = backbone  # a submodule: its weights twice in every checkpoint


class ReturnsNothing(TwoViews):
    def loss(self, outputs, targets):
        super().loss(outputs, targets)  # forgot the return


class HugeViews(TwoViews):
    def views(self):
        return [View(count=2, size=64)]


def test_a_sound_two_view_task_with_an_ema_target_passes():
    report = check_task(TwoViews, backbone=Net)
    assert report.losses[-1] < report.losses[0]
    assert any("views" in c for c in report.checks) and any(
        "frozen parameters untouched (2)" in c for c in report.checks
    )


@pytest.mark.parametrize(
    "task, needle",
    [
        (EmaInForward, "frozen parameter 'target.2.weight' changed or got a gradient in a training pass"),
        (CountsEvaluations, "an evaluation pass (eval mode, no gradient) changed the task's state"),
        (HoldsTheBackbone, "holds the backbone's parameters as its own"),
        (ReturnsNothing, "loss() returned NoneType, not a scalar tensor or sslkit.Loss"),
        (HugeViews, "views of 64 px (group 0), larger than the 32-px training images"),
    ],
)
def test_broken_two_view_tasks_are_named(task, needle):
    with pytest.raises(ConformanceError) as info:
        check_task(task, backbone=Net)
    assert needle in str(info.value), str(info.value)


def test_a_sound_task_passes():
    report = check_task(Flip, backbone=Net)
    assert report.losses[-1] < report.losses[0]
    assert "checkpoint round trip" in report.checks


@pytest.mark.parametrize(
    "task, needle",
    [
        (GlobalRandom, "same seeded generator"),
        (OutOfRange, "targets must lie in [0, 2)"),
        (Frozen, "does not depend on any trainable parameter"),
        (HiddenState, "state_dict"),
    ],
)
def test_broken_tasks_are_named(task, needle):
    with pytest.raises(ConformanceError) as info:
        check_task(task, backbone=Net)
    assert f"pretext task '{task.__name__}'" in str(info.value)
    assert needle in str(info.value)


def test_backbone_with_wrong_channels_or_unused_parameters():
    assert "onnx export matches" in check_backbone(Net, image_size=8).checks
    with pytest.raises(ConformanceError, match=r"stage 'conv' should be \[2, 4, 8, 8\]"):
        check_backbone(Net, options={"declared": 4}, image_size=8, onnx=False)
    with pytest.raises(ConformanceError, match="no gradient.*spare"):
        check_backbone(Unused, image_size=8, onnx=False)


def test_wrong_base_class_and_names_resolve_through_the_registry():
    with pytest.raises(ConformanceError, match="not a subclass of sslkit.Backbone"):
        check_backbone(nn.Conv2d)

    class Local:
        @staticmethod
        @hookimpl
        def register_backbones(register):
            register("kit_net", Net)

    plugins = load_plugins(extra=[Local], entry_points=False)
    assert check_backbone("kit_net", plugins=plugins, image_size=8, onnx=False).name == "kit_net"
    with pytest.raises(KeyError, match="kit_nte"):
        check_probe("kit_nte", plugins=plugins)
