"""Llama: the architecture of today's open LLMs (Llama 2/3, TinyLlama, Mistral's dense models).

Token embedding (no learned positions), pre-norm blocks with RMSNorm, rotary position embeddings
(the half-split rotation of Hugging Face's `rotate_half`), grouped-query causal attention (each of
the `n_kv_head` key/value heads serves n_head / n_kv_head query heads), a SwiGLU MLP
(down(silu(gate(x)) * up(x))), no biases anywhere, a final RMSNorm and an output head that is its
own matrix unless `tie_embeddings`; no dropout.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hlbench.workloads.base import ModelSpec, normal

INIT_STD = 0.02
# The per-block projections; their names end in ".w" like every kernel (neutral layout (in, out)).
ATTN_KERNELS = ("attn.q_proj.w", "attn.k_proj.w", "attn.v_proj.w", "attn.o_proj.w")
MLP_KERNELS = ("mlp.gate_proj.w", "mlp.up_proj.w", "mlp.down_proj.w")
RESIDUAL_KERNELS = ("attn.o_proj.w", "mlp.down_proj.w")  # the two that write the residual stream


@dataclasses.dataclass(frozen=True)
class LlamaSpec(ModelSpec):
    """Llama shape. Names and shapes (d = d_model, V = vocab, h = d_head = d / n_head, A = n_head·h,
    K = n_kv_head·h, F = d_ff):

    wte (V, d); per block i: h.{i}.attn_norm.g (d,), h.{i}.attn.q_proj.w (d, A),
    h.{i}.attn.k_proj.w (d, K), h.{i}.attn.v_proj.w (d, K), h.{i}.attn.o_proj.w (A, d),
    h.{i}.mlp_norm.g (d,), h.{i}.mlp.gate_proj.w (d, F), h.{i}.mlp.up_proj.w (d, F),
    h.{i}.mlp.down_proj.w (F, d); then norm_f.g (d,) and, unless tied, lm_head.w (d, V).
    Query head j uses key/value head j // (n_head / n_kv_head) (HF's repeat_kv order); each head's
    h features are contiguous along the output axis of q/k/v_proj.
    """

    n_layer: int
    n_head: int
    n_kv_head: int
    d_model: int
    d_ff: int
    n_positions: int  # the longest sequence; the rotary tables are built for this many positions
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    # Set only by structured pruning with `shrink` (hlbench.techniques.pruning): the query heads
    # (whole key/value groups) and MLP neurons that remain in every layer. None: all of them.
    n_head_kept: int | None = None
    d_mlp: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"llama spec '{self.size}'"
        if self.n_head % self.n_kv_head:
            raise ValueError(
                f"{where}: n_kv_head {self.n_kv_head} does not divide n_head {self.n_head} "
                "(grouped-query attention shares each key/value head among n_head / n_kv_head "
                "query heads)"
            )
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"{where}: d_model {self.d_model} / n_head {self.n_head} must be an even integer "
                "(the rotary embedding rotates pairs of features)"
            )
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{where}: {name} must be a positive number, got {value!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"{where}: tie_embeddings must be true or false")
        kept = self.n_head_kept
        if kept is not None and not (0 < kept <= self.n_head and kept % self.group_size == 0):
            raise ValueError(
                f"{where}: n_head_kept {kept} must be a positive multiple of "
                f"{self.group_size} (whole key/value groups) and at most n_head {self.n_head}"
            )

    @property
    def context(self) -> int:
        return self.n_positions

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_head // self.n_kv_head

    @property
    def heads(self) -> int:
        """Query heads in every layer: n_head, or what structured pruning left."""
        return self.n_head if self.n_head_kept is None else self.n_head_kept

    @property
    def kv_heads(self) -> int:
        return self.heads // self.group_size

    @property
    def d_attn(self) -> int:
        """Width of q and of the attention output: the kept query heads × d_head."""
        return self.heads * self.d_head

    @property
    def d_kv(self) -> int:
        """Width of k and v: the kept key/value heads × d_head."""
        return self.kv_heads * self.d_head

    @property
    def mlp_width(self) -> int:
        """SwiGLU hidden width: d_ff, or what structured pruning left."""
        return self.d_ff if self.d_mlp is None else self.d_mlp

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, V, A, K, F = self.d_model, self.vocab_size, self.d_attn, self.d_kv, self.mlp_width
        shapes: dict[str, tuple[int, ...]] = {"wte": (V, d)}
        for i in range(self.n_layer):
            p = f"h.{i}."
            shapes.update(
                {
                    p + "attn_norm.g": (d,),
                    p + "attn.q_proj.w": (d, A),
                    p + "attn.k_proj.w": (d, K),
                    p + "attn.v_proj.w": (d, K),
                    p + "attn.o_proj.w": (A, d),
                    p + "mlp_norm.g": (d,),
                    p + "mlp.gate_proj.w": (d, F),
                    p + "mlp.up_proj.w": (d, F),
                    p + "mlp.down_proj.w": (F, d),
                }
            )
        shapes["norm_f.g"] = (d,)
        if not self.tie_embeddings:
            shapes["lm_head.w"] = (d, V)
        return shapes

    def init_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Kernels and the embedding Normal(0, 0.02), as Hugging Face's Llama (initializer_range);
        the two residual projections per block (o_proj, down_proj) Normal(0, 0.02/sqrt(2L)) as
        GPT-2, so the residual stream's variance does not grow with depth; RMSNorm gains 1."""
        residual_std = INIT_STD / math.sqrt(2 * self.n_layer)
        weights: dict[str, np.ndarray] = {}
        for name, shape in self.param_shapes().items():
            if name.endswith(RESIDUAL_KERNELS):
                weights[name] = normal(seed, name, shape, residual_std)
            elif name.endswith(".w") or name == "wte":
                weights[name] = normal(seed, name, shape, INIT_STD)
            else:  # RMSNorm gains
                weights[name] = np.ones(shape, dtype=np.float32)
        return weights

    def rope_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin of the rotary angles, each (n_positions, d_head) float32: angle(t, j) =
        t · theta^(-2j/d_head) for j < d_head/2, repeated for the second half (HF's
        cat(freqs, freqs) layout, rotated by rotate_half). Computed once here in float64, so both
        frameworks use the same float32 tables."""
        h = self.d_head
        inv_freq = self.rope_theta ** (-np.arange(0, h, 2, dtype=np.float64) / h)  # (h/2,)
        angles = np.outer(np.arange(self.n_positions, dtype=np.float64), inv_freq)
        angles = np.concatenate([angles, angles], axis=1)  # (P, h)
        return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)

    @property
    def n_params_flops(self) -> int:
        """The matmul parameters: every kernel plus the head (V·d; when tied it is wte used as a
        matmul). Excluded: the untied embedding (a lookup) and the RMSNorm gains (elementwise)."""
        d = self.d_model
        norms = (2 * self.n_layer + 1) * d
        lookup = 0 if self.tie_embeddings else self.vocab_size * d
        return self.n_params - norms - lookup

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token = 6*N + 12*L*A*T, the gpt estimate with A = the query width.

        6*N: 2 FLOPs per multiply-add forward, twice that backward, over the N = `n_params_flops`
        matmul parameters (q, k, v, o, gate, up, down, head). 12*L*A*T: QK^T and the weighted sum
        of V, each T·h multiply-adds per query head per token (grouped-query attention shares k and
        v but every query head still attends over T keys), ×2 FLOPs ×3 for forward + backward.
        Not counted, as in FlopCounterMode: RMSNorm, the rotation, SiLU, softmax, the loss.
        T is the full sequence length (causal masking is not discounted).
        """
        self._check_seq_len(seq_len)
        return float(6 * self.n_params_flops + 12 * self.n_layer * self.d_attn * seq_len)

    def to_dict(self) -> dict[str, Any]:
        # the shrink fields only when set, as GPTSpec.to_dict
        return {
            k: v
            for k, v in super().to_dict().items()
            if v is not None or k not in ("n_head_kept", "d_mlp")
        }


def _preset(
    size: str,
    n_layer: int,
    n_head: int,
    n_kv_head: int,
    d_model: int,
    d_ff: int,
    n_positions: int,
    vocab_size: int,
) -> LlamaSpec:
    return LlamaSpec(
        model="llama",
        size=size,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_head=n_head,
        n_kv_head=n_kv_head,
        d_model=d_model,
        d_ff=d_ff,
        n_positions=n_positions,
    )


# d_ff ≈ 8/3·d rounded to a multiple of 16 (float8 GEMMs need it), Llama's SwiGLU sizing.
# 125m: GPT-2-small width and depth with 4 KV heads, 32000 tokens (Llama 2's vocabulary).
# 1b: TinyLlama-1.1B's shape (22 layers, d 2048, 32 heads / 4 KV heads, d_ff 5632).
PRESETS: dict[str, LlamaSpec] = {
    "tiny": _preset("tiny", 2, 4, 2, 64, 176, 64, 256),
    "small": _preset("small", 4, 4, 2, 256, 688, 256, 256),
    "125m": _preset("125m", 12, 12, 4, 768, 2048, 1024, 32000),
    "1b": _preset("1b", 22, 32, 4, 2048, 5632, 2048, 32000),
}
