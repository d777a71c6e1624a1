"""Pruning masks on the parameters' own device, no host copy of any weight and no sort of one. The
rules are hlbench.techniques.pruning's NumPy reference's, ties included:

- magnitude: the k smallest |w| of the neutral-layout concatenation (torch.kthvalue for the
  threshold), among those equal to the k-th smallest the first ones in that order;
- structured: per layer, the units' float64 sums of squares (hlbench.techniques.pruning_units says
  where each unit lies), the k lowest pruned by the same first-k rule (lowest index among ties);
- 2:4: in each group of 4 along the input axis, the 2 of lowest rank, ranked by |w| then position
  (a stable argsort's first 2), by comparing the 4 with each other (no sort).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from hlbench.techniques.pruning import N_M
from hlbench.techniques.pruning_units import UnitKind, first_k, layer_keeps, leaf_spans
from hlbench.workloads import ModelSpec


def first_k_smallest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """True for the k smallest entries of a 1-D tensor, the lowest positions first among equals
    (what a stable ascending argsort's first k are), without a sort or a host sync."""
    if not k:
        return torch.zeros_like(flat, dtype=torch.bool)
    threshold = torch.kthvalue(flat, k).values
    below = flat < threshold
    ties = flat == threshold
    need = k - below.sum()  # ≥ 1, a device tensor: no sync
    return below | (ties & (torch.cumsum(ties, 0) <= need))


@torch.no_grad()
def magnitude_keep(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Boolean keep-masks (True = keep), one per tensor and of its shape, for neutral-layout
    `weights` (a transposed view is fine: the order is the neutral one)."""
    flat = torch.cat([w.detach().float().abs().reshape(-1) for w in weights])
    keep = ~first_k_smallest(flat, int(round(sparsity * flat.numel())))
    out, offset = [], 0
    for w in weights:
        out.append(keep[offset : offset + w.numel()].reshape(w.shape))
        offset += w.numel()
    return out


def structured_keeps(
    spec: ModelSpec, param: Callable[[str], torch.Tensor], sparsity: float
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, keep-mask) for every masked parameter of a gpt or llama model, layer by layer;
    `param(name)` is the parameter in its neutral layout (a transposed view is fine)."""
    return layer_keeps(spec, param, sparsity, structured_keep)


@torch.no_grad()
def structured_keep(
    kinds: tuple[UnitKind, ...], layer: dict[str, torch.Tensor], sparsity: float
) -> dict[str, torch.Tensor]:
    """One layer's keep-masks (neutral shapes, expanded views) from its neutral-layout parameters
    (`layer`: leaf -> tensor; transposed views are fine)."""
    keeps = []
    for kind in kinds:
        scores = torch.zeros(
            kind.count, dtype=torch.float64, device=layer[kind.spans[0].leaf].device
        )
        for s in kind.spans:
            part = layer[s.leaf].detach().narrow(s.axis, s.start, s.stop - s.start)
            # the span's axis split into count blocks (a view, whatever the strides), squared in
            # float64 as the reference does and reduced over all but the unit axis: one copy
            blocks = part.unflatten(s.axis, (kind.count, -1)).to(torch.float64).square_()
            scores += blocks.sum([d for d in range(blocks.dim()) if d != s.axis])
        keeps.append(~first_k_smallest(scores, first_k(sparsity, kind.count)))
    masks = {}
    for leaf, (k, spans) in leaf_spans(kinds).items():
        count = kinds[k].count
        line = torch.cat([keeps[k].repeat_interleave((s.stop - s.start) // count) for s in spans])
        shape = layer[leaf].shape
        masks[leaf] = line if len(shape) == 1 else _along(line, spans[0].axis, shape)
    return masks


def _along(line: torch.Tensor, axis: int, shape: torch.Size) -> torch.Tensor:
    return (line[None, :] if axis == 1 else line[:, None]).expand(shape)


@torch.no_grad()
def n_m_keep(name: str, weight: torch.Tensor) -> torch.Tensor:
    """The 2:4 keep-mask of kernel `name`, neutral (in, out) (a transposed view is fine)."""
    n, m = N_M
    d_in, d_out = weight.shape
    if d_in % m:
        raise ValueError(f"2:4 pruning: {name} has {d_in} inputs, not a multiple of {m}")
    # groups along the last axis of the (out, in) layout torch stores kernels in (a transposed
    # view's |w| is already laid out so): every operand below is walked in one memory order
    rows = weight.detach().float().abs().t().contiguous()
    groups = rows.reshape(d_out, d_in // m, m)
    kept = _n_m_kept([groups[..., i] for i in range(m)], n)
    return torch.stack(kept, -1).reshape(d_out, d_in).t()


def _n_m_kept(group: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Per position i of a group: kept unless n or more come before it in a stable ascending order
    (smaller, or equal and earlier). One comparison per pair, no sort, no large temporaries."""
    ranks = [torch.zeros_like(a, dtype=torch.uint8) for a in group]
    for i, a in enumerate(group):
        for j in range(i + 1, len(group)):
            later_first = group[j] < a  # else a (earlier, smaller or equal) comes first
            ranks[i] += later_first
            ranks[j] += ~later_first
    return [rank >= n for rank in ranks]
