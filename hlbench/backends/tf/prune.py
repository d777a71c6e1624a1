"""Pruning masks on the variables' own device, no host copy of any weight and no host sort. The
rules are hlbench.techniques.pruning's NumPy reference's, ties included:

- magnitude: the k smallest |w| of the neutral-layout concatenation (tf.math.top_k over the smaller
  side for the threshold), among those equal to the k-th smallest the first ones in that order;
- structured: per layer, the units' float64 sums of squares (hlbench.techniques.pruning_units says
  where each unit lies), the k lowest pruned by the same first-k rule (lowest index among ties);
- 2:4: in each group of 4 along the input axis, the 2 of lowest rank, ranked by |w| then position
  (a stable argsort's first 2), by comparing the 4 with each other (no sort).

Only the threshold's value is taken from top_k, never its order among equal values, so the tie
rule does not depend on how a device's top_k kernel orders them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.techniques.pruning import N_M
from hlbench.techniques.pruning_units import (
    Span,
    UnitKind,
    first_k,
    layer_keeps,
    leaf_spans,
)
from hlbench.workloads import ModelSpec


def kth_smallest(flat: tf.Tensor, k: int) -> tf.Tensor:
    """The k-th smallest value (1-based) of a 1-D tensor, with the shorter of the two top-k's."""
    n = int(flat.shape[0])
    if k <= n - k + 1:
        return -tf.math.top_k(-flat, k, sorted=True).values[-1]
    return tf.math.top_k(flat, n - k + 1, sorted=True).values[-1]  # the (n-k+1)-th largest


def first_k_smallest(flat: tf.Tensor, k: int) -> tf.Tensor:
    """True for the k smallest entries of a 1-D tensor, the lowest positions first among equals
    (what a stable ascending argsort's first k are)."""
    if not k:
        return tf.zeros(flat.shape, tf.bool)
    threshold = kth_smallest(flat, k)
    below = flat < threshold
    ties = flat == threshold
    need = k - tf.reduce_sum(tf.cast(below, tf.int64))  # ≥ 1
    return below | (ties & (tf.cumsum(tf.cast(ties, tf.int64)) <= need))


def magnitude_keep(weights: list[Any], sparsity: float) -> list[tf.Tensor]:
    """Boolean keep-masks (True = keep), one per variable and of its shape (neutral layouts)."""
    flat = tf.concat([tf.reshape(tf.abs(tf.cast(w, tf.float32)), [-1]) for w in weights], 0)
    keep = tf.logical_not(first_k_smallest(flat, int(round(sparsity * int(flat.shape[0])))))
    sizes = [int(tf.size(w)) for w in weights]
    return [tf.reshape(part, w.shape) for part, w in zip(tf.split(keep, sizes), weights)]


def structured_keeps(
    spec: ModelSpec, param: Callable[[str], Any], sparsity: float
) -> Iterator[tuple[str, tf.Tensor]]:
    """(name, keep-mask) for every masked parameter of a gpt or llama model, layer by layer;
    `param(name)` is the variable, neutral layout."""
    return layer_keeps(spec, param, sparsity, structured_keep)


def structured_keep(
    kinds: tuple[UnitKind, ...], layer: dict[str, Any], sparsity: float
) -> dict[str, tf.Tensor]:
    """One layer's keep-masks (neutral shapes) from its neutral-layout variables (leaf -> var)."""
    keeps = []
    for kind in kinds:
        scores = tf.zeros([kind.count], tf.float64)
        for s in kind.spans:
            scores += _span_sq(tf.convert_to_tensor(layer[s.leaf]), s, kind.count)
        keeps.append(tf.logical_not(first_k_smallest(scores, first_k(sparsity, kind.count))))
    masks = {}
    for leaf, (k, spans) in leaf_spans(kinds).items():
        count = kinds[k].count
        line = tf.concat([tf.repeat(keeps[k], (s.stop - s.start) // count) for s in spans], 0)
        shape = layer[leaf].shape
        if len(shape) == 2:
            line = line[None, :] if spans[0].axis == 1 else line[:, None]
        masks[leaf] = tf.broadcast_to(line, shape)
    return masks


def _span_sq(value: tf.Tensor, s: Span, count: int) -> tf.Tensor:
    """Per unit, the float64 sum of squares of its block of span `s` (squared in float64, as the
    reference does), with no transpose."""
    whole = s.start == 0 and s.stop == value.shape[s.axis]
    if not whole:
        value = value[s.start : s.stop] if s.axis == 0 else value[:, s.start : s.stop]
    sq = tf.square(tf.cast(value, tf.float64))
    if len(sq.shape) == 2:  # first over the other axis (a plain row or column reduction)
        sq = tf.reduce_sum(sq, 1 - s.axis)
    return tf.reduce_sum(tf.reshape(sq, [count, -1]), 1)


def n_m_keep(name: str, weight: Any) -> tf.Tensor:
    """The 2:4 keep-mask of the neutral (in, out) kernel `name`."""
    n, m = N_M
    d_in, d_out = weight.shape
    if d_in % m:
        raise ValueError(f"2:4 pruning: {name} has {d_in} inputs, not a multiple of {m}")
    groups = tf.reshape(tf.abs(tf.cast(weight, tf.float32)), [d_in // m, m, d_out])
    return tf.reshape(tf.stack(_n_m_kept([groups[:, i] for i in range(m)], n), 1), [d_in, d_out])


def _n_m_kept(group: list[tf.Tensor], n: int) -> list[tf.Tensor]:
    """Per position i of a group: kept unless n or more come before it in a stable ascending order
    (smaller, or equal and earlier). One comparison per pair, no sort, no large temporaries."""
    ranks = [tf.zeros_like(a, dtype=tf.int32) for a in group]
    for i, a in enumerate(group):
        for j in range(i + 1, len(group)):
            later_first = tf.cast(group[j] < a, tf.int32)  # else a (earlier, ≤) comes first
            ranks[i] += later_first
            ranks[j] += 1 - later_first
    return [rank >= n for rank in ranks]


class MaskedPruning:
    """Mixin of TFTrainer: every pruning event on the trainer's device (Trainer.apply_masks and
    prune_*), and the masks kept as variables (`mask_vars`, made before tracing) that the compiled
    step multiplies the gradients by."""

    device: str
    names: list[str]
    params: list[Any]
    optimizer: Any  # AdamW: moments m[i], v[i] beside params[i]
    mask_vars: dict[str, tf.Variable]

    def apply_masks(self, masks: dict[str, np.ndarray]) -> None:
        with tf.device(self.device):
            self._mask_all((n, tf.constant(m)) for n, m in masks.items())

    def prune_magnitude(self, names: list[str], sparsity: float) -> None:
        with tf.device(self.device):
            self._mask_all(zip(names, magnitude_keep([self._param(n) for n in names], sparsity)))

    def prune_structured(self, spec: ModelSpec, sparsity: float) -> None:
        with tf.device(self.device):
            self._mask_all(structured_keeps(spec, self._param, sparsity))

    def prune_n_m(self, names: list[str]) -> None:
        with tf.device(self.device):
            self._mask_all((n, n_m_keep(n, self._param(n))) for n in names)

    def _param(self, name: str) -> Any:
        return self.params[self._maskable(name)]

    def _maskable(self, name: str) -> int:  # its index
        if name not in self.mask_vars:
            raise ValueError(f"{name} is not maskable under this cell's pruning settings")
        return self.names.index(name)

    def _mask_all(self, keeps: Iterable[tuple[str, Any]]) -> None:
        """Each named parameter and its moments multiplied by its keep-mask now, its gradient at
        every later step."""
        for name, keep in keeps:
            i = self._maskable(name)
            keep = tf.cast(keep, tf.as_dtype(self.params[i].dtype))  # Keras 3: a string dtype
            for var in (self.params[i], self.optimizer.m[i], self.optimizer.v[i]):
                var.assign(var * keep)
            self.mask_vars[name].assign(keep)
