"""The TensorFlow model of the `llama` workload (hlbench.workloads.llama): plain `tf.Variable`s
under their neutral names and TensorFlow ops, line for line the PyTorch module
(hlbench.backends.torch.llama), for the reasons hlbench.backends.tf.models gives for the GPT.

Precision, the placement torch's autocast gives the PyTorch module, written out: variables cast to
the compute dtype where a matmul uses them; the residual stream and the embedding in the variables'
dtype; RMSNorm statistics in float32, output in its input's dtype; the rotation in q/k's dtype with
the spec's float32 tables cast to it; the attention softmax in float32; SiLU in float32, rounded
once to the compute dtype (torch's reduced-precision CPU kernels compute it in float32).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.workloads import LlamaSpec


class Llama:
    """`variables`: neutral name → trainable variable; calling the model maps (B, T) ids to
    (B, T, V) logits (the interface of hlbench.backends.tf.models.TFModel)."""

    def __init__(
        self,
        spec: LlamaSpec,
        weights: dict[str, np.ndarray],
        param_dtype: tf.DType = tf.float32,
        compute_dtype: tf.DType = tf.float32,
    ) -> None:
        self.spec = spec
        self.compute_dtype = compute_dtype
        self.observed: dict[str, str] = {}
        self.variables: dict[str, Any] = {
            name: tf.Variable(tf.cast(weights[name], param_dtype), name=name.replace(".", "/"))
            for name in spec.param_shapes()
        }
        cos, sin = spec.rope_tables()
        self.rope_cos, self.rope_sin = tf.constant(cos), tf.constant(sin)  # (P, h) float32

    def _matmul(self, x: tf.Tensor, name: str) -> tf.Tensor:
        """x (..., in) @ the kernel `name` (in, out), in the compute dtype."""
        cd = self.compute_dtype
        return tf.matmul(tf.cast(x, cd), tf.cast(self.variables[name], cd))

    def _rms_norm(self, x: tf.Tensor, name: str) -> tf.Tensor:
        x32 = tf.cast(x, tf.float32)
        ms = tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True)
        y = x32 * tf.math.rsqrt(ms + self.spec.norm_eps) * tf.cast(self.variables[name], tf.float32)
        return tf.cast(y, x.dtype)

    def _heads(self, t: tf.Tensor, n: int) -> tf.Tensor:
        B, T = tf.shape(t)[0], tf.shape(t)[1]
        return tf.transpose(tf.reshape(t, (B, T, n, self.spec.d_head)), (0, 2, 1, 3))  # (B,n,T,h)

    @staticmethod
    def _rotate(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
        """x·cos + rotate_half(x)·sin, rotate_half(x) = cat(-x[..., h/2:], x[..., :h/2])."""
        cos, sin = tf.cast(cos, x.dtype), tf.cast(sin, x.dtype)
        x1, x2 = tf.split(x, 2, axis=-1)
        return x * cos + tf.concat([-x2, x1], axis=-1) * sin

    def _attention(self, x: tf.Tensor, i: int, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
        s, p = self.spec, f"h.{i}.attn."
        B, T = tf.shape(x)[0], tf.shape(x)[1]
        q = self._rotate(self._heads(self._matmul(x, p + "q_proj.w"), s.heads), cos, sin)
        k = self._rotate(self._heads(self._matmul(x, p + "k_proj.w"), s.kv_heads), cos, sin)
        v = self._heads(self._matmul(x, p + "v_proj.w"), s.kv_heads)
        group = s.heads // s.kv_heads
        if group > 1:  # query head j reads key/value head j // group
            k, v = tf.repeat(k, group, axis=1), tf.repeat(v, group, axis=1)
        scale = tf.cast(1.0 / math.sqrt(s.d_head), q.dtype)
        scores = tf.cast(tf.matmul(q, k, transpose_b=True) * scale, tf.float32)  # (B, H, T, T)
        causal = tf.linalg.band_part(tf.ones((T, T), dtype=tf.bool), -1, 0)
        scores = tf.where(causal, scores, tf.constant(-math.inf, dtype=scores.dtype))
        y = tf.matmul(tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype), v)  # (B, H, T, h)
        y = tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (B, T, s.d_attn))
        return self._matmul(y, p + "o_proj.w")

    def _mlp(self, x: tf.Tensor, i: int) -> tf.Tensor:
        p = f"h.{i}.mlp."
        gate = self._matmul(x, p + "gate_proj.w")
        act = tf.cast(tf.nn.silu(tf.cast(gate, tf.float32)), gate.dtype)
        return self._matmul(act * self._matmul(x, p + "up_proj.w"), p + "down_proj.w")

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        v_ = self.variables
        T = tf.shape(idx)[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = tf.gather(v_["wte"], idx)  # (B, T, d), the variables' dtype
        for i in range(self.spec.n_layer):
            # residual stream in the variables' dtype (mixed: fp32, as torch promotes fp32 + bf16)
            attn = self._attention(self._rms_norm(x, f"h.{i}.attn_norm.g"), i, cos, sin)
            x = x + tf.cast(attn, x.dtype)
            x = x + tf.cast(self._mlp(self._rms_norm(x, f"h.{i}.mlp_norm.g"), i), x.dtype)
        x = self._rms_norm(x, "norm_f.g")
        if self.spec.tie_embeddings:
            cd = self.compute_dtype
            return tf.matmul(tf.cast(x, cd), tf.cast(v_["wte"], cd), transpose_b=True)
        return self._matmul(x, "lm_head.w")  # (B, T, V)
