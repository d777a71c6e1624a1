"""Where the units of structured pruning lie in one layer's neutral-layout parameters: the
description the backends follow to score units and build masks with their own ops on their own
device (hlbench.backends.torch.prune, hlbench.backends.tf.prune), so no weight matrix is copied to
the host.

The NumPy reference (pruning.structured_units / structured_masks, and llama_pruning's) is written
out independently of this description, so the tests that compare device masks with it check both.
The rule both follow: a unit's score is the sum of squares of all its weights (in float64); per
layer the round(s · n) lowest-scoring units of a kind are pruned (at least one kept), among equal
scores the lowest indices first (a stable ascending argsort's first k).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hlbench.workloads import ModelSpec


@dataclass(frozen=True)
class Span:
    """A run of one parameter along one neutral axis that splits into the units' equal blocks."""

    leaf: str  # the parameter's name within its layer (after "h.{i}.")
    axis: int  # 1: kernel columns (outputs); 0: kernel rows (inputs) or a bias
    start: int
    stop: int  # [start, stop): count blocks of (stop - start) / count, unit 0 first


@dataclass(frozen=True)
class UnitKind:
    name: str  # "heads" / "neurons" (gpt), "kv_heads" / "neurons" (llama)
    count: int  # units of this kind per layer
    spans: tuple[Span, ...]


def unit_kinds(spec: ModelSpec) -> tuple[UnitKind, ...]:
    """The unit kinds of every layer of a gpt or llama model (all layers are alike)."""
    shapes = spec.param_shapes()
    d_ff = shapes["h.0.mlp.c_fc.w" if spec.model == "gpt" else "h.0.mlp.gate_proj.w"][1]
    if spec.model == "gpt":
        d, heads = spec.d_model, spec.n_head
        qkv = tuple(
            Span(leaf, axis, part * d, (part + 1) * d)
            for part in range(3)  # q, k, v
            for leaf, axis in (("attn.c_attn.w", 1), ("attn.c_attn.b", 0))
        )
        return (
            UnitKind("heads", heads, qkv + (Span("attn.c_proj.w", 0, 0, d),)),
            UnitKind(
                "neurons",
                d_ff,
                _mlp(("mlp.c_fc.w", 1), ("mlp.c_fc.b", 0), ("mlp.c_proj.w", 0), n=d_ff),
            ),
        )
    if spec.model == "llama":
        q_width = spec.n_head * spec.d_head  # the q columns of a k/v group are contiguous
        kv_width = spec.n_kv_head * spec.d_head
        groups = (
            Span("attn.q_proj.w", 1, 0, q_width),
            Span("attn.k_proj.w", 1, 0, kv_width),
            Span("attn.v_proj.w", 1, 0, kv_width),
            Span("attn.o_proj.w", 0, 0, q_width),
        )
        mlp = _mlp(("mlp.gate_proj.w", 1), ("mlp.up_proj.w", 1), ("mlp.down_proj.w", 0), n=d_ff)
        return (UnitKind("kv_heads", spec.n_kv_head, groups), UnitKind("neurons", d_ff, mlp))
    raise ValueError(
        "structured pruning removes attention heads and MLP neurons; only the gpt and llama "
        f"workloads have them, not {spec.model}"
    )


def _mlp(*leaves: tuple[str, int], n: int) -> tuple[Span, ...]:
    return tuple(Span(leaf, axis, 0, n) for leaf, axis in leaves)


def leaf_spans(kinds: tuple[UnitKind, ...]) -> dict[str, tuple[int, list[Span]]]:
    """Per masked leaf: the index of its unit kind and its spans in axis order. A leaf's spans
    cover its whole axis, so its mask along that axis is their blocks' keep flags, concatenated."""
    out: dict[str, tuple[int, list[Span]]] = {}
    for k, kind in enumerate(kinds):
        for span in kind.spans:
            out.setdefault(span.leaf, (k, []))[1].append(span)
    for _, spans in out.values():
        spans.sort(key=lambda s: s.start)
    return out


def first_k(sparsity: float, count: int) -> int:
    """How many of `count` units an event at `sparsity` prunes (at least one is kept)."""
    return min(int(round(sparsity * count)), count - 1)


def layer_keeps(
    spec: ModelSpec,
    param: Callable[[str], Any],
    sparsity: float,
    keep_layer: Callable[[tuple[UnitKind, ...], dict[str, Any], float], dict[str, Any]],
) -> Iterator[tuple[str, Any]]:
    """(name, keep-mask) for every masked parameter of a gpt or llama model, layer by layer:
    `keep_layer(kinds, layer, sparsity)` is a backend's rule for one layer's leaves (leaf ->
    its parameter from `param(name)`, neutral layout)."""
    kinds = unit_kinds(spec)
    leaves = list(leaf_spans(kinds))
    for i in range(spec.n_layer):
        layer = {leaf: param(f"h.{i}.{leaf}") for leaf in leaves}
        for leaf, keep in keep_layer(kinds, layer, sparsity).items():
            yield f"h.{i}.{leaf}", keep
