"""PyTorch modules for the framework-neutral workloads, and loading of their NumPy initial weights.

Module attribute names follow the neutral parameter names of hlbench.workloads (h.{i}.attn.c_attn,
...), so loading is a rename: `.w` → `.weight` (transposed: the neutral layout is (in, out),
nn.Linear's is (out, in)), `.g` → `.weight`, `.b` → `.bias`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hlbench.backends.torch.llama import Llama
from hlbench.workloads import CustomSpec, ModelSpec

LAYER_NORM_EPS = 1e-5  # GPT-2's


class CausalSelfAttention(nn.Module):
    """`n_head` heads of `d_head`; d_attn = n_head·d_head is d_model unless structured pruning
    shrank it."""

    def __init__(self, d_model: int, n_head: int, d_head: int) -> None:
        super().__init__()
        self.n_head, self.d_head = n_head, d_head
        self.c_attn = nn.Linear(d_model, 3 * n_head * d_head)
        self.c_proj = nn.Linear(n_head * d_head, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        A = self.n_head * self.d_head
        q, k, v = self.c_attn(x).split(A, dim=2)
        # each (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, A))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, d_ff)
        self.c_proj = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        d = spec.d_model
        self.ln_1 = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.attn = CausalSelfAttention(d, spec.d_attn // spec.d_head, spec.d_head)
        self.ln_2 = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.mlp = MLP(d, spec.d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # pre-LayerNorm residual blocks
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2: token + learned position embeddings, pre-LN blocks, final LN, head tied to wte."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.wte = nn.Embedding(spec.vocab_size, spec.d_model)
        self.wpe = nn.Embedding(spec.n_positions, spec.d_model)
        self.h = nn.ModuleList(Block(spec) for _ in range(spec.n_layer))
        self.ln_f = nn.LayerNorm(spec.d_model, eps=LAYER_NORM_EPS)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, d)
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied head: (B, T, V)


class LSTMLM(nn.Module):
    """Embedding → stacked LSTM → linear head.

    The neutral spec has one bias per gate set; nn.LSTM has two (input and hidden). The hidden-side
    biases are zeroed and frozen, so the sum the cell computes is exactly the neutral bias.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.embed = nn.Embedding(spec.vocab_size, spec.d_embed)
        self.lstm = nn.LSTM(spec.d_embed, spec.d_hidden, num_layers=spec.n_layer, batch_first=True)
        self.head = nn.Linear(spec.d_hidden, spec.vocab_size)
        for i in range(spec.n_layer):
            bias_hh = getattr(self.lstm, f"bias_hh_l{i}")
            bias_hh.requires_grad_(False)
            with torch.no_grad():
                bias_hh.zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)  # (B, T, d_embed)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            if not onednn_lstm_runs(dtype):
                return self.head(self._lstm_native_on_cpu(x, dtype))
        out, _ = self.lstm(x)  # (B, T, h); autocast casts it like a matmul
        return self.head(out)  # (B, T, V)

    def _lstm_native_on_cpu(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """What autocast(dtype) means for the LSTM, done by hand on the CPU: inputs and weights
        cast to `dtype` (differentiably: the gradients reach the fp32 master weights in fp32), the
        recurrence run in `dtype`. Autocast itself would send it to oneDNN, whose CPU LSTM has no
        fp16 kernel, and no bf16 kernel on CPUs without AVX-512 BF16 ("could not create a
        primitive descriptor", torch 2.13); PyTorch's native CPU LSTM has both."""
        params = {name: p.to(dtype) for name, p in self.lstm.named_parameters()}
        buffers = dict(self.lstm.named_buffers())
        # only `enabled` changes (None leaves alone the other oneDNN flags the defaults would set)
        no_onednn = torch.backends.mkldnn.flags(
            enabled=False, deterministic=None, allow_tf32=None, fp32_precision=None
        )
        with torch.autocast("cpu", enabled=False), no_onednn:
            out, _ = torch.func.functional_call(self.lstm, {**params, **buffers}, (x.to(dtype),))
        return out  # (B, T, h), in dtype


@functools.cache
def onednn_lstm_runs(dtype: torch.dtype) -> bool:
    """Whether oneDNN's CPU LSTM has a `dtype` kernel on this CPU (probed once on a tiny LSTM):
    never for fp16, for bf16 only where the CPU has AVX-512 BF16 or AMX."""
    if dtype == torch.float16:
        return False
    probe = nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=dtype), torch.no_grad():
            probe(torch.zeros(1, 2, 4))
    except RuntimeError:
        return False
    return True


def build_model(spec: ModelSpec) -> nn.Module:
    if isinstance(spec, CustomSpec):  # built by hlbench.backends.torch.custom: reused
        return spec.require_built().module
    return {"gpt": GPT, "lstm": LSTMLM, "llama": Llama}[spec.model](spec)


def parameter_map(model: nn.Module, spec: ModelSpec) -> dict[str, tuple[nn.Parameter, bool]]:
    """Neutral parameter name → (torch parameter, whether the neutral array is transposed)."""
    params = dict(model.named_parameters())
    mapping: dict[str, tuple[nn.Parameter, bool]] = {}
    if isinstance(spec, CustomSpec):  # the module's own names; Linear weights transposed
        transposed = spec.require_built().transposed
        return {name: (params[name], name in transposed) for name in spec.param_shapes()}
    for name in spec.param_shapes():
        if spec.model == "lstm" and name.startswith("lstm."):
            _, layer, leaf = name.split(".")
            torch_name = {
                "wx": f"lstm.weight_ih_l{layer}",
                "wh": f"lstm.weight_hh_l{layer}",
                "b": f"lstm.bias_ih_l{layer}",
            }[leaf]
            mapping[name] = (params[torch_name], leaf != "b")
            continue
        if name in ("wte", "wpe", "embed"):
            mapping[name] = (params[f"{name}.weight"], False)
            continue
        prefix, leaf = name.rsplit(".", 1)
        torch_leaf = {"w": "weight", "g": "weight", "b": "bias"}[leaf]
        mapping[name] = (params[f"{prefix}.{torch_leaf}"], leaf == "w")
    return mapping


def load_weights(model: nn.Module, spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
    """Copy exactly the neutral initial weights into the model; every trainable parameter must be
    set."""
    mapping = parameter_map(model, spec)
    with torch.no_grad():
        for name, (param, transposed) in mapping.items():
            array = weights[name].T if transposed else weights[name]
            if tuple(param.shape) != array.shape:
                raise ValueError(
                    f"{name}: torch shape {tuple(param.shape)} != neutral shape {array.shape}"
                )
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    loaded = {id(p) for p, _ in mapping.values()}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in loaded]
    if missing:
        raise ValueError(f"parameters without neutral initial weights: {missing}")
