"""Global magnitude masks on the parameters' own device: torch.kthvalue for the threshold, no host
copy and no sort. The rule is hlbench.techniques.pruning.magnitude_masks's, ties included: the k
smallest |w| of the neutral-layout concatenation, among those equal to the k-th smallest the first
ones in that order."""

from __future__ import annotations

import torch


@torch.no_grad()
def magnitude_keep(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Boolean keep-masks (True = keep), one per tensor and of its shape, for neutral-layout
    `weights` (a transposed view is fine: the order is the neutral one)."""
    flat = torch.cat([w.detach().float().abs().reshape(-1) for w in weights])
    k = int(round(sparsity * flat.numel()))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        threshold = torch.kthvalue(flat, k).values
        below = flat < threshold
        ties = flat == threshold
        need = k - below.sum()  # ≥ 1, a device tensor: no sync
        keep = ~(below | (ties & (torch.cumsum(ties, 0) <= need)))
    out, offset = [], 0
    for w in weights:
        out.append(keep[offset : offset + w.numel()].reshape(w.shape))
        offset += w.numel()
    return out
