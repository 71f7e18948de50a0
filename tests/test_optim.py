"""The optimiser's parameter groups and LARS (sslkit.engine.optim)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sslkit.config import OptimConfig
from sslkit.engine.optim import LARS, make_optimizer, param_groups, set_group_lrs
from sslkit.errors import ConfigError


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.predictor = nn.Linear(4, 2)
        self.target = nn.Linear(4, 2).requires_grad_(False)  # an EMA copy: never optimised


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_one_group_by_default_frozen_parameters_left_out():
    model = Net()
    (group,) = param_groups(model, OptimConfig())
    assert _names(model, group) == sorted(n for n, p in model.named_parameters() if not n.startswith("target"))
    assert group["weight_decay"] == 5e-4 and group["lr_scale"] == 1.0


def test_norms_and_biases_without_decay_and_per_module_multipliers():
    model = Net()
    o = OptimConfig(exclude_norm_bias=True, lr_multipliers={"predictor": 10.0})
    groups = {(g["lr_scale"], g["weight_decay"]): _names(model, g) for g in param_groups(model, o)}
    assert groups == {
        (1.0, 5e-4): ["conv.weight"],
        (1.0, 0.0): ["conv.bias", "norm.bias", "norm.weight"],
        (10.0, 5e-4): ["predictor.weight"],
        (10.0, 0.0): ["predictor.bias"],
    }
    opt = make_optimizer(model, o, torch.device("cpu"))
    set_group_lrs(opt, 0.05)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.05, 0.05, 0.5, 0.5])
    with pytest.raises(ConfigError, match="names 'head', which holds no trainable parameter"):
        param_groups(model, OptimConfig(lr_multipliers={"head": 2.0}))
    with pytest.raises(
        ConfigError, match="names 'target', which holds no trainable parameter"
    ):  # frozen: nothing to scale
        param_groups(model, OptimConfig(lr_multipliers={"target": 2.0}))


def test_a_plain_group_steps_exactly_as_sgd():
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 5)
    ours = make_optimizer(a, OptimConfig(), torch.device("cpu"))
    plain = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for _ in range(3):
        for model, opt in ((a, ours), (b, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_lars_scales_each_step_by_the_trust_ratio():
    """You et al. 2017 as SimCLR's LARS: v = m v + lr * eta ||w|| / ||g + wd w|| * (g + wd w); w -= v;
    groups with lars=False (biases, norms) take the plain momentum step."""
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS(
        [{"params": [w], "lars": True, "weight_decay": 0.1}, {"params": [b], "lars": False, "weight_decay": 0.0}],
        lr=0.5,
        momentum=0.9,
        eta=0.01,
    )
    w.grad, b.grad = torch.tensor([0.3, 0.0]), torch.tensor([2.0])
    opt.step()
    d = torch.tensor([0.3, 0.0]) + 0.1 * torch.tensor([3.0, 4.0])  # g + wd w = [0.6, 0.4]
    trust = 0.01 * 5.0 / float(d.norm())
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.5 * trust * d)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.5 * 2.0]))
    w.grad, b.grad = torch.zeros(2), torch.zeros(1)  # a second step: momentum alone (plus decay's own trust)
    before = b.detach().clone()
    opt.step()
    torch.testing.assert_close(b.detach(), before - 0.9 * 0.5 * 2.0)


def test_lars_trains_from_the_config():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    opt = make_optimizer(
        model, OptimConfig(name="lars", lr=1.0, exclude_norm_bias=True, nesterov=False), torch.device("cpu")
    )
    assert isinstance(opt, LARS) and sorted(g["lars"] for g in opt.param_groups) == [False, True]
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        first = first if first is not None else float(loss)
        loss.backward()
        opt.step()
    assert float(loss) < first
