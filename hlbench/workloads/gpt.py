"""GPT: the GPT-2 architecture exactly.

Token + learned position embeddings, pre-LayerNorm blocks (eps 1e-5), causal multi-head attention
with biases, a 4*d MLP with tanh-GELU, a final LayerNorm and an output head tied to the token
embedding; no dropout.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hlbench.workloads.base import ModelSpec, normal

LAYER_NORM_EPS = 1e-5
INIT_STD = 0.02  # GPT-2 / nanoGPT


@dataclasses.dataclass(frozen=True)
class GPTSpec(ModelSpec):
    """GPT-2 shape. Names and shapes (d = d_model, V = vocab, P = n_positions):

    wte (V, d), wpe (P, d); per block i: h.{i}.ln_1.g/b (d,), h.{i}.attn.c_attn.w (d, 3d) with
    q, k, v concatenated in that order along the output axis, h.{i}.attn.c_attn.b (3d,),
    h.{i}.attn.c_proj.w (d, d), .b (d,), h.{i}.ln_2.g/b (d,), h.{i}.mlp.c_fc.w (d, 4d), .b (4d,),
    h.{i}.mlp.c_proj.w (4d, d), .b (d,); then ln_f.g/b (d,). The head is wte itself (tied).
    """

    n_layer: int
    n_head: int
    d_model: int
    n_positions: int
    # Set only by structured pruning with `shrink` (hlbench.techniques.pruning): the attention heads
    # (each d_model / n_head wide) and MLP neurons that remain in every layer. None: all of them.
    n_head_kept: int | None = None
    d_mlp: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.n_head:
            raise ValueError(
                f"gpt spec '{self.size}': d_model {self.d_model} is not divisible by "
                f"n_head {self.n_head}"
            )

    @property
    def context(self) -> int:
        return self.n_positions

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def d_attn(self) -> int:
        """Width of q, k, v and of the attention output: the kept heads × d_head."""
        return (self.n_head if self.n_head_kept is None else self.n_head_kept) * self.d_head

    @property
    def d_ff(self) -> int:
        """MLP hidden width: 4·d, or what structured pruning left."""
        return 4 * self.d_model if self.d_mlp is None else self.d_mlp

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, V, P = self.d_model, self.vocab_size, self.n_positions
        a, f = self.d_attn, self.d_ff
        shapes: dict[str, tuple[int, ...]] = {"wte": (V, d), "wpe": (P, d)}
        for i in range(self.n_layer):
            p = f"h.{i}."
            shapes.update(
                {
                    p + "ln_1.g": (d,),
                    p + "ln_1.b": (d,),
                    p + "attn.c_attn.w": (d, 3 * a),
                    p + "attn.c_attn.b": (3 * a,),
                    p + "attn.c_proj.w": (a, d),
                    p + "attn.c_proj.b": (d,),
                    p + "ln_2.g": (d,),
                    p + "ln_2.b": (d,),
                    p + "mlp.c_fc.w": (d, f),
                    p + "mlp.c_fc.b": (f,),
                    p + "mlp.c_proj.w": (f, d),
                    p + "mlp.c_proj.b": (d,),
                }
            )
        shapes.update({"ln_f.g": (d,), "ln_f.b": (d,)})
        return shapes

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """GPT-2/nanoGPT init: matrices and embeddings Normal(0, 0.02); the two residual projections
        per block Normal(0, 0.02/sqrt(2L)) so the residual stream's variance does not grow with
        depth (2 residual adds per block); biases 0; LayerNorm gains 1."""
        residual_std = INIT_STD / math.sqrt(2 * self.n_layer)
        weights: dict[str, np.ndarray] = {}
        for name, shape in self.param_shapes().items():
            if name.endswith(("attn.c_proj.w", "mlp.c_proj.w")):
                weights[name] = normal(seed, name, shape, residual_std)
            elif name.endswith(".w") or name in ("wte", "wpe"):
                weights[name] = normal(seed, name, shape, INIT_STD)
            elif name.endswith(".g"):
                weights[name] = np.ones(shape, dtype=np.float32)
            else:  # biases, LayerNorm biases
                weights[name] = np.zeros(shape, dtype=np.float32)
        return weights

    @property
    def n_params_flops(self) -> int:
        """All parameters except wpe: wte counts because the tied head is a real d x V matmul,
        while the position-embedding lookup costs no matmul FLOPs."""
        return self.n_params - self.n_positions * self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token = 6*N + 12*L*d*T (the PaLM / nanoGPT estimate).

        6*N: forward (2 FLOPs per multiply-add) + backward (twice the forward) over the N =
        `n_params_flops` matmul parameters. 12*L*d*T: attention scores (QK^T) and the weighted sum
        (AV), 2*T*d multiply-adds per token per layer, times 2 FLOPs x 3 for forward + backward.
        T is the full sequence length; causal masking is not discounted. After a structured
        `shrink`, d in the attention term is the kept attention width (heads × d_head).
        """
        self._check_seq_len(seq_len)
        return float(6 * self.n_params_flops + 12 * self.n_layer * self.d_attn * seq_len)

    def to_dict(self) -> dict[str, Any]:
        # the shrink fields only when set, so unpruned cells keep the content hashes they always had
        return {
            k: v
            for k, v in super().to_dict().items()
            if v is not None or k not in ("n_head_kept", "d_mlp")
        }


def _preset(
    size: str, n_layer: int, n_head: int, d_model: int, n_positions: int, vocab_size: int
) -> GPTSpec:
    return GPTSpec(
        model="gpt",
        size=size,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_head=n_head,
        d_model=d_model,
        n_positions=n_positions,
    )


# 50304 = GPT-2's 50257 padded up to a multiple of 64: faster matmuls; extra rows are never targets.
PRESETS: dict[str, GPTSpec] = {
    "tiny": _preset("tiny", 2, 2, 64, 64, 256),
    "small": _preset("small", 4, 4, 256, 256, 256),
    "medium": _preset("medium", 8, 8, 512, 512, 8192),
    "gpt2-124m": _preset("gpt2-124m", 12, 12, 768, 1024, 50304),
    "gpt2-350m": _preset("gpt2-350m", 24, 16, 1024, 1024, 50304),
}
