"""Structured pruning of the `llama` workload, framework-neutral (hlbench.techniques.pruning
dispatches here): whole key/value groups of attention heads and SwiGLU neurons, on neutral-layout
weights.

The unit of attention is the key/value group: one k/v head and the n_head / n_kv_head query heads
that read it. Removing a query head alone would leave grouped-query attention's sharing uneven
(layers of unequal group sizes that no Llama implementation runs); removing a k/v head without
its query heads would leave them nothing to read. A group's score is the L2 norm over all its
weights: its q columns, its k and v columns and its o_proj rows. A neuron's score: its gate and up
columns and its down_proj row. In each layer the round(s · n_kv_head) groups and round(s · d_ff)
neurons with the smallest scores are pruned (at least one of each is kept).

Masked and shrunk models compute the same function: a pruned group's q, k and v are zero, so its
heads' attention output is zero, and its o_proj rows are zero too; a pruned neuron's gate is zero
and silu(0) = 0.
"""

from __future__ import annotations

import numpy as np

from hlbench.workloads import LlamaSpec
from hlbench.workloads.llama import ATTN_KERNELS, MLP_KERNELS

MASKABLE_LEAVES = ATTN_KERNELS + MLP_KERNELS


def keep_largest(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """True for the units kept: all but the round(sparsity · n) smallest, at least one."""
    k = min(int(round(sparsity * scores.size)), scores.size - 1)
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:k]] = False
    return keep


def _sq(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) ** 2


def structured_units(
    spec: LlamaSpec, weights: dict[str, np.ndarray], sparsity: float
) -> dict[int, dict[str, np.ndarray]]:
    """Per layer: which query heads ("heads", n_head), key/value heads ("kv_heads", n_kv_head) and
    MLP neurons ("neurons", d_ff) to keep."""
    d, G, g, h = spec.d_model, spec.n_kv_head, spec.group_size, spec.d_head
    kept: dict[int, dict[str, np.ndarray]] = {}
    for i in range(spec.n_layer):
        w = {leaf: weights[f"h.{i}.{leaf}"] for leaf in MASKABLE_LEAVES}
        # query head j = kv group j // g: the q columns of a group are contiguous (g·h of them)
        group_sq = _sq(w["attn.q_proj.w"]).reshape(d, G, g * h).sum(axis=(0, 2))
        group_sq += _sq(w["attn.k_proj.w"]).reshape(d, G, h).sum(axis=(0, 2))
        group_sq += _sq(w["attn.v_proj.w"]).reshape(d, G, h).sum(axis=(0, 2))
        group_sq += _sq(w["attn.o_proj.w"]).reshape(G, g * h, d).sum(axis=(1, 2))
        neuron_sq = (
            _sq(w["mlp.gate_proj.w"]).sum(axis=0)
            + _sq(w["mlp.up_proj.w"]).sum(axis=0)
            + _sq(w["mlp.down_proj.w"]).sum(axis=1)
        )
        groups = keep_largest(group_sq, sparsity)
        kept[i] = {
            "heads": np.repeat(groups, g),
            "kv_heads": groups,
            "neurons": keep_largest(neuron_sq, sparsity),
        }
    return kept


def _columns(spec: LlamaSpec, keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Which q (and o_proj input) features, k/v features and MLP neurons survive."""
    h = spec.d_head
    return {
        "q": np.repeat(keep["heads"], h),
        "kv": np.repeat(keep["kv_heads"], h),
        "mlp": keep["neurons"],
    }


# per kernel: which surviving set indexes it and along which axis (0: inputs, 1: outputs)
_AXES = {
    "attn.q_proj.w": ("q", 1),
    "attn.k_proj.w": ("kv", 1),
    "attn.v_proj.w": ("kv", 1),
    "attn.o_proj.w": ("q", 0),
    "mlp.gate_proj.w": ("mlp", 1),
    "mlp.up_proj.w": ("mlp", 1),
    "mlp.down_proj.w": ("mlp", 0),
}


def structured_masks(
    spec: LlamaSpec, units: dict[int, dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Element masks of the kernels that zero the pruned groups and neurons."""
    shapes = spec.param_shapes()
    masks = {}
    for i, keep in units.items():
        cols = _columns(spec, keep)
        for leaf, (which, axis) in _AXES.items():
            name = f"h.{i}.{leaf}"
            line = cols[which][None, :] if axis == 1 else cols[which][:, None]
            masks[name] = np.broadcast_to(line, shapes[name]).copy()
    return masks


def shrink_weights(
    spec: LlamaSpec, weights: dict[str, np.ndarray], units: dict[int, dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The weights with the pruned groups and neurons physically removed (neutral layout)."""
    out = dict(weights)
    for i, keep in units.items():
        cols = _columns(spec, keep)
        for leaf, (which, axis) in _AXES.items():
            name = f"h.{i}.{leaf}"
            w = weights[name]
            out[name] = np.ascontiguousarray(w[:, cols[which]] if axis == 1 else w[cols[which], :])
    return out
