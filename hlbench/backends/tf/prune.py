"""Global magnitude masks on the variables' own device: tf.math.top_k over the smaller side for the
threshold, no host copy and no host sort. The rule is hlbench.techniques.pruning.magnitude_masks's,
ties included: the k smallest |w| of the neutral-layout concatenation, among those equal to the
k-th smallest the first ones in that order."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def kth_smallest(flat: tf.Tensor, k: int) -> tf.Tensor:
    """The k-th smallest value (1-based) of a 1-D tensor, with the shorter of the two top-k's."""
    n = int(flat.shape[0])
    if k <= n - k + 1:
        return -tf.math.top_k(-flat, k, sorted=True).values[-1]
    return tf.math.top_k(flat, n - k + 1, sorted=True).values[-1]  # the (n-k+1)-th largest


def magnitude_keep(weights: list[Any], sparsity: float) -> list[tf.Tensor]:
    """Boolean keep-masks (True = keep), one per variable and of its shape (neutral layouts)."""
    flat = tf.concat([tf.reshape(tf.abs(tf.cast(w, tf.float32)), [-1]) for w in weights], 0)
    k = int(round(sparsity * int(flat.shape[0])))
    if not k:
        return [tf.ones(w.shape, tf.bool) for w in weights]
    threshold = kth_smallest(flat, k)
    below = flat < threshold
    ties = flat == threshold
    need = k - tf.reduce_sum(tf.cast(below, tf.int64))  # ≥ 1
    keep = tf.logical_not(below | (ties & (tf.cumsum(tf.cast(ties, tf.int64)) <= need)))
    sizes = [int(tf.size(w)) for w in weights]
    return [tf.reshape(part, w.shape) for part, w in zip(tf.split(keep, sizes), weights)]
