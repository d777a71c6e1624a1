"""TensorFlow models for the framework-neutral workloads, holding exactly their NumPy initial
weights.

Why plain `tf.Variable`s and TensorFlow ops for the GPT rather than Keras layers: the neutral layout
is already TensorFlow's (kernels are (in, out)), so every variable *is* a neutral tensor under its
neutral name — no renaming, no transposes, nothing Keras initialises, casts or tracks behind the
benchmark's back — and the forward pass reads line by line like the PyTorch one
(hlbench.backends.torch.models). The LSTM is the exception: it uses `keras.layers.LSTM`, because
that layer is where TensorFlow keeps its fused cuDNN kernel (PyTorch's nn.LSTM uses cuDNN too; a
hand-written recurrence would compare a slow loop against a fused kernel). Its kernel, recurrent
kernel and single bias have exactly the neutral shapes and gate order (i, f, g/c, o).

Precision (the autocast equivalent, written out): `param_dtype` is what the variables store
(float32, or bfloat16 for bf16-pure), `compute_dtype` what matmuls run in. Variables are cast to the
compute dtype where a matmul uses them, so their gradients arrive in the variables' dtype, as with
torch.autocast. What stays float32, as in PyTorch: the residual stream and embeddings of the mixed
levels (torch: embedding is not autocast, and fp32 + bf16 promotes to fp32), LayerNorm statistics,
the softmax of attention and the loss (torch's reduced-precision CPU kernels for LayerNorm, softmax
and GELU compute in float32 and round once; these do the same). The LSTM uses the Keras dtype
policy of the level ("mixed_bfloat16", "mixed_float16", "bfloat16"), Keras's own autocast.

`observed` records, at trace time (dtypes are static in a graph), the output dtype of the LSTM; the
trainer records the logits' (hlbench.backends.tf.trainer): the forward half of the precision check.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.backends.tf.llama import Llama
from hlbench.workloads import CustomSpec, ModelSpec

LAYER_NORM_EPS = 1e-5  # GPT-2's


class TFModel:
    """`variables`: neutral name → trainable variable; calling the model maps (B, T) ids to
    (B, T, V) logits."""

    variables: dict[str, Any]
    compute_dtype: tf.DType = tf.float32
    observed: dict[str, str]

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _linear(self, x: tf.Tensor, w: tf.Variable, b: tf.Variable) -> tf.Tensor:
        """x (..., in) @ w (in, out) + b, in the compute dtype (variables cast where used)."""
        cd = self.compute_dtype
        return tf.matmul(tf.cast(x, cd), tf.cast(w, cd)) + tf.cast(b, cd)


def _layer_norm(x: tf.Tensor, g: tf.Variable, b: tf.Variable) -> tf.Tensor:
    """Statistics and normalisation in float32, output in x's dtype (as torch's LayerNorm
    kernels)."""
    f32 = tf.float32
    x32 = tf.cast(x, f32)
    mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)  # biased, as torch's LN
    y = (x32 - mean) * tf.math.rsqrt(var + LAYER_NORM_EPS) * tf.cast(g, f32) + tf.cast(b, f32)
    return tf.cast(y, x.dtype)


class GPT(TFModel):
    """GPT-2: token + learned position embeddings, pre-LN blocks, final LN, head tied to wte."""

    def __init__(
        self,
        spec: ModelSpec,
        weights: dict[str, np.ndarray],
        param_dtype: tf.DType = tf.float32,
        compute_dtype: tf.DType = tf.float32,
    ) -> None:
        self.spec = spec
        self.compute_dtype = compute_dtype
        self.observed = {}
        self.variables = {
            name: tf.Variable(tf.cast(weights[name], param_dtype), name=name.replace(".", "/"))
            for name in spec.param_shapes()
        }

    def _attention(self, x: tf.Tensor, i: int) -> tf.Tensor:
        v_ = self.variables
        # C: d_model unless a structured shrink removed heads
        B, T, C = tf.shape(x)[0], tf.shape(x)[1], self.spec.d_attn
        hs = self.spec.d_head
        nh = C // hs
        qkv = self._linear(x, v_[f"h.{i}.attn.c_attn.w"], v_[f"h.{i}.attn.c_attn.b"])  # (B, T, 3C)
        q, k, v = tf.split(qkv, 3, axis=-1)
        # (B, nh, T, hs)
        q, k, v = (tf.transpose(tf.reshape(t, (B, T, nh, hs)), (0, 2, 1, 3)) for t in (q, k, v))
        scale = tf.cast(1.0 / math.sqrt(hs), q.dtype)
        scores = tf.matmul(q, k, transpose_b=True) * scale  # (B, nh, T, T)
        scores = tf.cast(scores, tf.float32)  # softmax in float32, as torch's attention kernels do
        causal = tf.linalg.band_part(tf.ones((T, T), dtype=tf.bool), -1, 0)
        scores = tf.where(causal, scores, tf.constant(-math.inf, dtype=scores.dtype))
        y = tf.matmul(tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype), v)  # (B, nh, T, hs)
        y = tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (B, T, C))
        return self._linear(y, v_[f"h.{i}.attn.c_proj.w"], v_[f"h.{i}.attn.c_proj.b"])

    def _mlp(self, x: tf.Tensor, i: int) -> tf.Tensor:
        v_ = self.variables
        pre = self._linear(x, v_[f"h.{i}.mlp.c_fc.w"], v_[f"h.{i}.mlp.c_fc.b"])
        # GELU in float32, then back to the compute dtype
        hidden = tf.cast(tf.nn.gelu(tf.cast(pre, tf.float32), approximate=True), pre.dtype)
        return self._linear(hidden, v_[f"h.{i}.mlp.c_proj.w"], v_[f"h.{i}.mlp.c_proj.b"])

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        v_ = self.variables
        T = tf.shape(idx)[1]
        x = tf.gather(v_["wte"], idx) + v_["wpe"][:T]  # (B, T, d), the variables' dtype
        for i in range(self.spec.n_layer):
            # residual stream in the variables' dtype (mixed: fp32, as torch promotes fp32 + bf16)
            x = x + tf.cast(
                self._attention(_layer_norm(x, v_[f"h.{i}.ln_1.g"], v_[f"h.{i}.ln_1.b"]), i),
                x.dtype,
            )
            x = x + tf.cast(
                self._mlp(_layer_norm(x, v_[f"h.{i}.ln_2.g"], v_[f"h.{i}.ln_2.b"]), i), x.dtype
            )
        x = _layer_norm(x, v_["ln_f.g"], v_["ln_f.b"])
        cd = self.compute_dtype
        # the head is tied to wte: (B, T, V)
        return tf.matmul(tf.cast(x, cd), tf.cast(v_["wte"], cd), transpose_b=True)


class LSTMLM(TFModel):
    """Embedding → stacked keras.layers.LSTM → linear head."""

    def __init__(
        self,
        spec: ModelSpec,
        weights: dict[str, np.ndarray],
        param_dtype: tf.DType = tf.float32,
        compute_dtype: tf.DType = tf.float32,
    ) -> None:
        import keras  # Keras 3, installed with TensorFlow

        self.spec = spec
        self.compute_dtype = compute_dtype
        self.observed = {}
        self.embed = tf.Variable(tf.cast(weights["embed"], param_dtype), name="embed")
        self.layers = []
        d_in = spec.d_embed
        policy = self.policy = keras_policy(param_dtype, compute_dtype)
        for i in range(spec.n_layer):
            # zeros: every weight is overwritten with the neutral one below (and Keras's orthogonal
            # initializer has no bfloat16 kernel, which bf16-pure would hit)
            layer = keras.layers.LSTM(
                spec.d_hidden,
                return_sequences=True,
                name=f"lstm_{i}",
                dtype=policy,
                kernel_initializer="zeros",
                recurrent_initializer="zeros",
                bias_initializer="zeros",
                unit_forget_bias=False,
            )
            layer.build((None, None, d_in))
            d_in = spec.d_hidden
            self.layers.append(layer)
        self.head_w = tf.Variable(tf.cast(weights["head.w"], param_dtype), name="head/w")
        self.head_b = tf.Variable(tf.cast(weights["head.b"], param_dtype), name="head/b")
        self.variables = {"embed": self.embed}
        for i, layer in enumerate(self.layers):
            cell = layer.cell
            # keras's (kernel, recurrent_kernel, bias) are the neutral (wx, wh, b): same shapes,
            # same gate order
            for leaf, var in (("wx", cell.kernel), ("wh", cell.recurrent_kernel), ("b", cell.bias)):
                name = f"lstm.{i}.{leaf}"
                if tuple(var.shape) != weights[name].shape:
                    raise ValueError(
                        f"{name}: keras shape {tuple(var.shape)} != neutral shape "
                        f"{weights[name].shape}"
                    )
                var.assign(tf.cast(weights[name], var.dtype))
                self.variables[name] = var
        self.variables.update({"head.w": self.head_w, "head.b": self.head_b})

    def __call__(self, idx: tf.Tensor) -> tf.Tensor:
        x = tf.gather(self.embed, idx)  # (B, T, d_embed)
        for layer in self.layers:
            x = layer(x)  # (B, T, h); the layer's policy casts its input to the compute dtype
        self.observed.setdefault("recurrent_output", x.dtype.name)
        return self._linear(x, self.head_w, self.head_b)  # (B, T, V)


def keras_policy(param_dtype: tf.DType, compute_dtype: tf.DType) -> str:
    """The Keras dtype policy for variables in `param_dtype` computing in `compute_dtype`."""
    if param_dtype == compute_dtype:
        return param_dtype.name  # "float32" or "bfloat16" (bf16-pure)
    if param_dtype == tf.float32 and compute_dtype in (tf.bfloat16, tf.float16):
        return f"mixed_{compute_dtype.name}"
    raise ValueError(
        f"no Keras policy for {param_dtype.name} variables computing in {compute_dtype.name}"
    )


def build_model(
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    param_dtype: tf.DType = tf.float32,
    compute_dtype: tf.DType = tf.float32,
) -> TFModel:
    if isinstance(spec, CustomSpec):  # a Keras model built by hlbench.backends.tf.custom
        model = spec.require_built().module
    else:
        models = {"gpt": GPT, "lstm": LSTMLM, "llama": Llama}
        model = models[spec.model](spec, weights, param_dtype, compute_dtype)
    missing = set(spec.param_shapes()) - set(model.variables)
    if missing:
        raise ValueError(f"parameters without a TensorFlow variable: {sorted(missing)}")
    return model
