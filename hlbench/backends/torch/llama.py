"""The PyTorch module of the `llama` workload (hlbench.workloads.llama), attribute for attribute the
neutral parameter names, so hlbench.backends.torch.models.load_weights loads it by renaming
(`.w` → `.weight`, transposed; `.g` → `.weight`).

Precision, as for the GPT: RMSNorm statistics and normalisation in float32, output in its input's
dtype (the residual stream: float32 at the mixed levels, as torch promotes fp32 + bf16); the
rotation in q/k's dtype with the float32 tables cast to it (HF's Llama does the same); everything
else as autocast places it. hlbench.backends.tf.llama writes out the same placement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hlbench.workloads import LlamaSpec


class RMSNorm(nn.Module):
    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, h) rotated by the rotary angles: x·cos + rotate_half(x)·sin, where
    rotate_half(x) = cat(-x[..., h/2:], x[..., :h/2]) (HF's half-split convention)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    """Grouped-query causal attention: `heads` query heads over `kv_heads` key/value heads."""

    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        d, self.d_head = spec.d_model, spec.d_head
        self.heads, self.kv_heads = spec.heads, spec.kv_heads
        self.q_proj = nn.Linear(d, spec.d_attn, bias=False)
        self.k_proj = nn.Linear(d, spec.d_kv, bias=False)
        self.v_proj = nn.Linear(d, spec.d_kv, bias=False)
        self.o_proj = nn.Linear(spec.d_attn, d, bias=False)

    def _heads(self, t: torch.Tensor, n: int) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, n, self.d_head).transpose(1, 2)  # (B, n, T, h)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = rotate(self._heads(self.q_proj(x), self.heads), cos, sin)
        k = rotate(self._heads(self.k_proj(x), self.kv_heads), cos, sin)
        v = self._heads(self.v_proj(x), self.kv_heads)
        group = self.heads // self.kv_heads
        if group > 1:
            # query head j reads key/value head j // group (HF's repeat_kv); expanded rather than
            # SDPA's enable_gqa, which not every attention kernel (CPU flash, CUDA efficient) takes
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, h)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.heads * self.d_head))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, width: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, width, bias=False)
        self.up_proj = nn.Linear(d_model, width, bias=False)
        self.down_proj = nn.Linear(width, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(spec.d_model, spec.norm_eps)
        self.attn = Attention(spec)
        self.mlp_norm = RMSNorm(spec.d_model, spec.norm_eps)
        self.mlp = MLP(spec.d_model, spec.mlp_width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)  # pre-norm residual blocks
        return x + self.mlp(self.mlp_norm(x))


class Llama(nn.Module):
    """Token embedding, pre-RMSNorm blocks with rotary GQA and SwiGLU, final RMSNorm, head."""

    def __init__(self, spec: LlamaSpec) -> None:
        super().__init__()
        self.wte = nn.Embedding(spec.vocab_size, spec.d_model)
        self.h = nn.ModuleList(Block(spec) for _ in range(spec.n_layer))
        self.norm_f = RMSNorm(spec.d_model, spec.norm_eps)
        self.lm_head = (
            None if spec.tie_embeddings else nn.Linear(spec.d_model, spec.vocab_size, bias=False)
        )
        cos, sin = spec.rope_tables()
        # buffers, so .to(device) moves them; not persistent: they are the spec's, not state
        self.register_buffer("rope_cos", torch.tensor(cos), persistent=False)
        self.register_buffer("rope_sin", torch.tensor(sin), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]  # (T, h), broadcast over batch and heads
        x = self.wte(idx)  # (B, T, d)
        for block in self.h:
            x = block(x, cos, sin)
        x = self.norm_f(x)
        if self.lm_head is None:
            return F.linear(x, self.wte.weight)  # tied head: (B, T, V)
        return self.lm_head(x)  # (B, T, V)
