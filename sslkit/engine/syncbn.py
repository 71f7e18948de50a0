"""Batch statistics over all processes, so N processes train exactly like one.

PyTorch's ``nn.SyncBatchNorm`` runs on CUDA only; :class:`DistributedBatchNorm2d` does the same
on any device with gloo: it all-reduces the per-channel sum, sum of squares and count (a
differentiable all-reduce, so gradients flow through the shared statistics as they would in
one process). It keeps BatchNorm2d's parameter and buffer names, so checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn


class DistributedBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        local = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), xf.new_tensor([x.numel() / c])])
        total = dist_fn.all_reduce(local)  # [2C + 1]: sum, sum of squares, count over all processes
        count = total[-1]
        mean = total[:c] / count
        var = (total[c : 2 * c] / count - mean * mean).clamp_min(0)  # biased, as BatchNorm normalises
        # The buffers exist exactly when track_running_stats is set (nn.BatchNorm2d's contract).
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        if self.track_running_stats and running_mean is not None and running_var is not None and tracked is not None:
            with torch.no_grad():
                tracked.add_(1)
                # momentum None: a cumulative average, as in BatchNorm2d (precise BN relies on it)
                m = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                running_mean.mul_(1 - m).add_(mean, alpha=m)
                running_var.mul_(1 - m).add_(var * count / (count - 1), alpha=m)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by its all-process version (in place where possible)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, DistributedBatchNorm2d):
        new = DistributedBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        new.load_state_dict(module.state_dict())
        return new.to(device=module.weight.device if module.affine else device)
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, device))
    return module
