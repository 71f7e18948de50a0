"""Batch statistics over all processes, so N processes train exactly like one.

PyTorch's ``nn.SyncBatchNorm`` runs on CUDA only; :class:`DistributedBatchNorm2d` (and
:class:`DistributedBatchNorm1d`, for the BatchNorm1d of projection heads) do the same on any
device with gloo: they all-reduce the per-channel sum, sum of squares and count (a
differentiable all-reduce, so gradients flow through the shared statistics as they would in one
process). They keep BatchNorm's parameter and buffer names, so checkpoints are unchanged. Every
BatchNorm of the model is converted, the task's modules included.
"""

from __future__ import annotations

import torch
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn


class _DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        dims = (0, *range(2, x.dim()))  # every dimension but the channels
        shape = (1, c, *([1] * (x.dim() - 2)))
        # Two passes, as BatchNorm itself computes the variance (sum of squares minus the squared
        # mean loses digits in float32): the global mean first, then the centred second moment.
        first = dist_fn.all_reduce(torch.cat([xf.sum(dims), xf.new_tensor([x.numel() / c])]))  # [C + 1]
        count = first[-1]
        mean = first[:c] / count
        var = dist_fn.all_reduce((xf - mean.view(shape)).pow(2).sum(dims)) / count  # biased, as BN normalises
        # The buffers exist exactly when track_running_stats is set (nn.BatchNorm2d's contract).
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        if self.track_running_stats and running_mean is not None and running_var is not None and tracked is not None:
            with torch.no_grad():
                tracked.add_(1)
                # momentum None: a cumulative average, as in BatchNorm2d (precise BN relies on it)
                m = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                running_mean.mul_(1 - m).add_(mean, alpha=m)
                running_var.mul_(1 - m).add_(var * count / (count - 1), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


class DistributedBatchNorm1d(_DistributedBatchNorm, nn.BatchNorm1d):
    pass


class DistributedBatchNorm2d(_DistributedBatchNorm, nn.BatchNorm2d):
    pass


_DISTRIBUTED = {nn.BatchNorm1d: DistributedBatchNorm1d, nn.BatchNorm2d: DistributedBatchNorm2d}


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm1d/2d, the task's included, by its all-process version (in place
    where possible)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    kind = _DISTRIBUTED.get(type(module))  # type: ignore[arg-type]
    if kind is not None and isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = kind(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for name, p in module.named_parameters(recurse=False):  # a frozen (EMA) module stays frozen
            getattr(new, name).requires_grad_(p.requires_grad)
        return new.to(device=module.weight.device if module.affine else device)
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module
