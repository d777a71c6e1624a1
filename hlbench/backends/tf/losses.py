"""The training loss of both TensorFlow trainers: summed token cross-entropy, as in PyTorch."""

from __future__ import annotations

import tensorflow as tf

from hlbench.data import IGNORE_INDEX


def token_loss_sum(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Sum of per-token cross-entropies over positions whose target is not IGNORE_INDEX (float32).

    A sum, not a mean: the caller divides by the step-wide target-token count, so micro-batches
    with different numbers of real tokens weigh as they would in one full batch."""
    mask = tf.not_equal(targets, IGNORE_INDEX)
    safe_targets = tf.where(mask, targets, tf.zeros_like(targets))  # the op rejects negative labels
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=safe_targets, logits=tf.cast(logits, tf.float32)
    )
    return tf.reduce_sum(tf.where(mask, per_token, tf.zeros_like(per_token)))
