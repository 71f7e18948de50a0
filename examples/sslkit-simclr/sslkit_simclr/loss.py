"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen, Kornblith, Norouzi,
Hinton, ICML 2020, sec. 2.1, eq. 1), with negatives from the global batch.

For 2N views of N images, view i's logits are its cosine similarities to every other view,
divided by the temperature; its target is the other view of the same image. With V > 2 views
per image (multi-crop) every other view of the same image is a positive and the loss averages
their log-probabilities (Khosla et al. 2020, "L_out"), which is exactly NT-Xent for V = 2. Keys
come from every process (``sslkit.distributed.all_gather_with_grad``), so a run on N processes
sees the negatives of one process on the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslkit.distributed import all_gather_with_grad, rank


def nt_xent(views: list[Tensor], temperature: float, gather: bool = True) -> tuple[Tensor, Tensor]:
    """``views``: V projections [n, d] of the same n images (this process's) -> (loss, top-1
    accuracy of finding a positive among every other view of the global batch)."""
    v, n = len(views), views[0].shape[0]
    queries = F.normalize(torch.cat(views).float(), dim=1)  # [V*n, d], view-major
    keys = all_gather_with_grad(queries) if gather else queries  # [W*V*n, d], process-major blocks
    offset = (rank() if gather else 0) * v * n
    logits = queries @ keys.T / temperature  # [V*n, W*V*n]
    row = torch.arange(v * n, device=queries.device)
    image = row % n
    # Positives: the other views of the same image, in this process's block of keys.
    cols = offset + torch.arange(v, device=queries.device)[None, :] * n + image[:, None]  # [V*n, V]
    own = offset + row
    logits = logits.masked_fill(F.one_hot(own, keys.shape[0]).bool(), float("-inf"))  # never itself
    positive = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, cols, True)
    positive[row, own] = False
    log_prob = logits.log_softmax(dim=1)
    loss = -(log_prob.masked_fill(~positive, 0.0).sum(1) / (v - 1)).mean()
    accuracy = positive.gather(1, logits.argmax(1, keepdim=True)).float().mean()
    return loss, accuracy
