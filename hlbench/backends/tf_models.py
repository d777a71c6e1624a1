"""TensorFlow models for the framework-neutral workloads, holding exactly their NumPy initial weights.

Why plain `tf.Variable`s and TensorFlow ops for the GPT rather than Keras layers: the neutral layout
is already TensorFlow's (kernels are (in, out)), so every variable *is* a neutral tensor under its
neutral name — no renaming, no transposes, nothing Keras initialises, casts or tracks behind the
benchmark's back — and the forward pass reads line by line like the PyTorch one (torch_models.py).
The LSTM is the exception: it uses `keras.layers.LSTM`, because that layer is where TensorFlow keeps
its fused cuDNN kernel (PyTorch's nn.LSTM uses cuDNN too; a hand-written recurrence would compare a
slow loop against a fused kernel). Its kernel, recurrent kernel and single bias have exactly the
neutral shapes and gate order (i, f, g/c, o).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.workloads import ModelSpec

LAYER_NORM_EPS = 1e-5  # GPT-2's


class TFModel:
    """`variables`: neutral name → trainable variable; calling the model maps (B, T) ids to (B, T, V) logits."""

    variables: dict[str, Any]

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError


def _layer_norm(x: tf.Tensor, g: tf.Variable, b: tf.Variable) -> tf.Tensor:
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)  # biased variance, as torch's LayerNorm
    return (x - mean) * tf.math.rsqrt(var + LAYER_NORM_EPS) * g + b


def _linear(x: tf.Tensor, w: tf.Variable, b: tf.Variable) -> tf.Tensor:
    return tf.matmul(x, w) + b  # x (..., in) @ w (in, out)


class GPT(TFModel):
    """GPT-2: token + learned position embeddings, pre-LN blocks, final LN, head tied to wte."""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.variables = {name: tf.Variable(weights[name], name=name.replace(".", "/")) for name in spec.param_shapes()}

    def _attention(self, x: tf.Tensor, i: int) -> tf.Tensor:
        v_ = self.variables
        B, T, C = tf.shape(x)[0], tf.shape(x)[1], self.spec.d_model
        nh = self.spec.n_head
        hs = C // nh
        qkv = _linear(x, v_[f"h.{i}.attn.c_attn.w"], v_[f"h.{i}.attn.c_attn.b"])  # (B, T, 3C)
        q, k, v = tf.split(qkv, 3, axis=-1)
        q, k, v = (tf.transpose(tf.reshape(t, (B, T, nh, hs)), (0, 2, 1, 3)) for t in (q, k, v))  # (B, nh, T, hs)
        scores = tf.matmul(q, k, transpose_b=True) * tf.cast(1.0 / math.sqrt(hs), q.dtype)  # (B, nh, T, T)
        causal = tf.linalg.band_part(tf.ones((T, T), dtype=tf.bool), -1, 0)
        scores = tf.where(causal, scores, tf.constant(-math.inf, dtype=scores.dtype))
        y = tf.matmul(tf.nn.softmax(scores, axis=-1), v)  # (B, nh, T, hs)
        y = tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (B, T, C))
        return _linear(y, v_[f"h.{i}.attn.c_proj.w"], v_[f"h.{i}.attn.c_proj.b"])

    def _mlp(self, x: tf.Tensor, i: int) -> tf.Tensor:
        v_ = self.variables
        hidden = tf.nn.gelu(_linear(x, v_[f"h.{i}.mlp.c_fc.w"], v_[f"h.{i}.mlp.c_fc.b"]), approximate=True)
        return _linear(hidden, v_[f"h.{i}.mlp.c_proj.w"], v_[f"h.{i}.mlp.c_proj.b"])

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        v_ = self.variables
        T = tf.shape(idx)[1]
        x = tf.gather(v_["wte"], idx) + v_["wpe"][:T]  # (B, T, d)
        for i in range(self.spec.n_layer):
            x = x + self._attention(_layer_norm(x, v_[f"h.{i}.ln_1.g"], v_[f"h.{i}.ln_1.b"]), i)
            x = x + self._mlp(_layer_norm(x, v_[f"h.{i}.ln_2.g"], v_[f"h.{i}.ln_2.b"]), i)
        x = _layer_norm(x, v_["ln_f.g"], v_["ln_f.b"])
        return tf.matmul(x, v_["wte"], transpose_b=True)  # tied head: (B, T, V)


class LSTMLM(TFModel):
    """Embedding → stacked keras.layers.LSTM → linear head."""

    def __init__(self, spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
        import keras  # Keras 3, installed with TensorFlow

        self.spec = spec
        self.embed = tf.Variable(weights["embed"], name="embed")
        self.layers = []
        d_in = spec.d_embed
        for i in range(spec.n_layer):
            layer = keras.layers.LSTM(spec.d_hidden, return_sequences=True, name=f"lstm_{i}")
            layer.build((None, None, d_in))
            d_in = spec.d_hidden
            self.layers.append(layer)
        self.head_w = tf.Variable(weights["head.w"], name="head/w")
        self.head_b = tf.Variable(weights["head.b"], name="head/b")
        self.variables = {"embed": self.embed}
        for i, layer in enumerate(self.layers):
            cell = layer.cell
            # keras's (kernel, recurrent_kernel, bias) are the neutral (wx, wh, b): same shapes, same gate order
            for leaf, var in (("wx", cell.kernel), ("wh", cell.recurrent_kernel), ("b", cell.bias)):
                name = f"lstm.{i}.{leaf}"
                if tuple(var.shape) != weights[name].shape:
                    raise ValueError(f"{name}: keras shape {tuple(var.shape)} != neutral shape {weights[name].shape}")
                var.assign(weights[name])
                self.variables[name] = var
        self.variables.update({"head.w": self.head_w, "head.b": self.head_b})

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        x = tf.gather(self.embed, idx)  # (B, T, d_embed)
        for layer in self.layers:
            x = layer(x)  # (B, T, h)
        return _linear(x, self.head_w, self.head_b)  # (B, T, V)


def build_model(spec: ModelSpec, weights: dict[str, np.ndarray]) -> TFModel:
    model = {"gpt": GPT, "lstm": LSTMLM}[spec.model](spec, weights)
    missing = set(spec.param_shapes()) - set(model.variables)
    if missing:
        raise ValueError(f"parameters without a TensorFlow variable: {sorted(missing)}")
    return model
