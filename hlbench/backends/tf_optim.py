"""AdamW and global-norm clipping for the TensorFlow backend, with PyTorch's exact arithmetic.

Why not keras.optimizers.AdamW / tf.clip_by_global_norm: both differ from what the PyTorch backend
runs, so the frameworks would not train the same way.
- Keras's Adam adds ε to sqrt(v) *before* the bias correction of v (its update is
  lr·sqrt(1-β2ᵗ)/(1-β1ᵗ) · m / (sqrt(v) + ε)), PyTorch's after it (lr/(1-β1ᵗ) · m / (sqrt(v)/sqrt(1-β2ᵗ) + ε)):
  the same only when ε is negligible, which is not true for small gradients early in training.
- tf.clip_by_global_norm scales by clip/max(norm, clip); torch.nn.utils.clip_grad_norm_ by
  min(1, clip/(norm + 1e-6)).
Both are a few lines, written here once.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

TORCH_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds it to the norm


def global_norm(grads: Sequence[tf.Tensor]) -> tf.Tensor:
    """The 2-norm of all gradients together (float32)."""
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads]))


def clip_by_global_norm(grads: Sequence[tf.Tensor], max_norm: float) -> list[tf.Tensor]:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, max_norm / (norm + 1e-6))."""
    coef = tf.minimum(1.0, max_norm / (global_norm(grads) + TORCH_CLIP_EPS))
    return [g * tf.cast(coef, g.dtype) for g in grads]


class AdamW:
    """torch.optim.AdamW (amsgrad off, maximize off): decoupled decay, then the bias-corrected Adam step.

    `decayed[i]` says whether variables[i] gets weight decay (the neutral spec decides, as in PyTorch).
    Moments are created here, eagerly, so the compiled step never creates variables.
    """

    def __init__(self, variables: Sequence[Any], decayed: Sequence[bool], opt: dict[str, Any]) -> None:
        self.variables = list(variables)
        self.decayed = list(decayed)
        self.lr = float(opt["lr"])
        self.beta1, self.beta2 = (float(b) for b in opt["betas"])
        self.eps = float(opt["eps"])
        self.weight_decay = float(opt["weight_decay"])
        self.step = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="adamw/step")
        self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adamw/m") for v in self.variables]
        self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="adamw/v") for v in self.variables]

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        step = self.step.assign_add(1.0)
        bias_correction1 = 1.0 - tf.pow(self.beta1, step)
        bias_correction2_sqrt = tf.sqrt(1.0 - tf.pow(self.beta2, step))
        step_size = self.lr / bias_correction1
        for var, grad, m, v, decayed in zip(self.variables, grads, self.m, self.v, self.decayed):
            if decayed and self.weight_decay:
                var.assign(var * (1.0 - self.lr * self.weight_decay))
            m.assign(m + (grad - m) * (1.0 - self.beta1))  # torch: m.lerp_(grad, 1 - β1)
            v.assign(v * self.beta2 + grad * grad * (1.0 - self.beta2))
            denom = tf.sqrt(v) / tf.cast(bias_correction2_sqrt, v.dtype) + self.eps
            var.assign_sub(tf.cast(step_size, var.dtype) * m / denom)
