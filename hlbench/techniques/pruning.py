"""Pruning, framework-neutral: the configuration, masks from NumPy weights, the schedules, and
sparsity.

The mask functions here are the reference definition, on neutral-layout weights ((in, out)
kernels). The backends compute the same masks on their own device with their own ops (top-k /
kthvalue thresholds, per-unit score vectors, no host copy of a weight: hlbench.backends.*.prune,
following .pruning_units for where structured units lie), the same selection ties included, and the
tests hold them to these functions. A backend applies them: weights and AdamW moments multiplied by
the mask at each pruning event, gradients multiplied by it at every step, so a pruned weight is
exactly zero after every optimizer step (decoupled weight decay of 0 is 0, and its Adam update is
0 / (sqrt(0) + ε) = 0).

Why not torch.nn.utils.prune / torch.ao.pruning: their reparametrisation keeps a dense
`weight_orig` and multiplies it by the mask in a forward pre-hook, so the stored weights are not
zero (the 2:4 sparse-tensor conversion and `shrink` need them to be), the extra multiply is a
PyTorch-only cost that TensorFlow (whose tensorflow-model-optimization does not accept Keras 3
models) would not pay, and the masks would be computed by a second, PyTorch-only implementation.
The masks here follow the same definitions (global L1 magnitude; L2-norm structured units; 2 of 4).

Methods:
- magnitude: unstructured, global over the linear kernels (embeddings, norms, biases excluded):
  the `round(s·n)` smallest |w| over all of them are zeroed (ties broken by position,
  deterministically).
- structured (gpt): per layer, the `round(s·H)` attention heads and `round(s·F)` MLP neurons with
  the smallest L2 norm over all their weights (q, k, v columns and biases and the c_proj rows of a
  head; the c_fc column and bias and the c_proj row of a neuron). With `shrink`, the backend
  removes them. llama: whole key/value groups of heads and SwiGLU neurons (.llama_pruning).
- 2:4: in each group of 4 consecutive weights along the input dimension, the 2 smallest |w| are
  zeroed.
Schedules: oneshot (at `at`: step 0 from the initial weights, or after the warmup) and gradual
(Zhu & Gupta 2017: s_t = s_f · (1 − (1 − (t − t0)/(n·Δ))³) at t = t0, t0+Δ, …, t0 + n·Δ).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from hlbench.axes import PRUNING_METHODS
from hlbench.techniques import llama_pruning
from hlbench.workloads import CustomSpec, ModelSpec

METHODS = PRUNING_METHODS
SCHEDULES = ("oneshot", "gradual")
N_M = (2, 4)  # N zeros in every group of M
DEFAULT_SPARSITY = 0.5  # what a method named without a sparsity prunes
STRUCTURED_MODELS = ("gpt", "llama")  # the workloads with attention heads and MLP neurons
RESOLVED = {
    "resolved": True
}  # validation context of a cell's config (see PruningConfig._consistent)


class PruningConfig(BaseModel):
    """One pruning setting: a suite's `pruning: {NAME: {...}}` entry (validated strictly, so a typo
    or a setting the method ignores is an error) and, dumped, a cell's `techniques["pruning"]`."""

    # strict: no "0.5" -> 0.5 coercion; ints are still accepted for floats
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    method: Literal[METHODS] = "none"  # type: ignore[valid-type]
    # target fraction of pruned weights (magnitude) or units (structured); unused by method none
    sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = DEFAULT_SPARSITY
    schedule: Literal[SCHEDULES] = "oneshot"  # type: ignore[valid-type]
    at: Literal["init", "after_warmup"] = (
        "init"  # oneshot: step 0 (initial weights) or after warmup
    )
    start_step: Annotated[int, Field(ge=0)] = 0  # gradual: first pruning step t0
    end_step: Annotated[int, Field(ge=0)] = 0  # gradual: last pruning step (= t0 + n·Δ)
    every_steps: Annotated[int, Field(gt=0)] = 1  # gradual: Δ
    shrink: bool = False  # structured: physically remove the pruned heads and neurons
    sparse_kernels: bool = False  # 2:4 on CUDA cc ≥ 8.0 (torch): linears as semi-structured sparse

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> PruningConfig:
        method = self.method
        # What a suite wrote: a setting the method or schedule ignores is a mistake to report. A
        # resolved config (a cell's) has every field, so these checks do not apply to it.
        written = set() if (info.context or {}).get("resolved") else self.model_fields_set
        if method == "none" and written - {"method"}:
            raise ValueError("method none takes no settings")
        if self.shrink and method != "structured":
            raise ValueError(f"shrink applies to structured pruning only (method is {method})")
        if self.sparse_kernels and method != "2:4":
            raise ValueError(f"sparse_kernels applies to 2:4 pruning only (method is {method})")
        if method == "2:4" and "sparsity" in written:
            raise ValueError("2:4 has a fixed sparsity of 50%; remove `sparsity`")
        if method == "2:4" and self.schedule != "oneshot":
            raise ValueError("2:4 is oneshot only")
        if self.schedule == "gradual" and self.end_step <= self.start_step:
            raise ValueError(
                f"gradual: end_step ({self.end_step}) must be after start_step ({self.start_step})"
            )
        if self.schedule == "oneshot" and written & {"start_step", "end_step", "every_steps"}:
            raise ValueError("start_step, end_step and every_steps belong to schedule: gradual")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningConfig:
        """A cell's resolved config (`to_dict` of one); {"method": "none"} for no pruning."""
        return cls.model_validate(dict(data), context=RESOLVED)

    def to_dict(self) -> dict[str, Any]:
        """What a cell records: every setting, or just {"method": "none"} (so every un-pruned cell
        hashes alike)."""
        return {"method": "none"} if self.method == "none" else self.model_dump()

    def event_steps(self, warmup_steps: int) -> list[int]:
        """The optimizer steps before which masks are (re)computed and applied."""
        if self.method == "none":
            return []
        if self.schedule == "oneshot":
            return [0 if self.at == "init" else warmup_steps]
        return list(range(self.start_step, self.end_step + 1, self.every_steps))

    def sparsity_at(self, step: int) -> float:
        """Target sparsity of the event at `step` (the cubic schedule for gradual)."""
        if self.schedule == "oneshot":
            return self.sparsity
        span = self.end_step - self.start_step
        progress = min(max((step - self.start_step) / span, 0.0), 1.0)
        return self.sparsity * (1.0 - (1.0 - progress) ** 3)


def prunable(spec: ModelSpec) -> list[str]:
    """The linear kernels magnitude and 2:4 pruning act on (embeddings, norms, biases excluded)."""
    if isinstance(spec, CustomSpec):  # the built module's Linear (Dense) kernels
        return spec.kernels
    if spec.model in STRUCTURED_MODELS:  # wte excluded (gpt's and a tied llama's head)
        return [n for n in spec.param_shapes() if n.endswith(".w")]
    return [n for n in spec.param_shapes() if n.endswith((".wx", ".wh")) or n == "head.w"]


def maskable(spec: ModelSpec, config: PruningConfig) -> list[str]:
    """Every parameter a pruning event of this config can mask (backends prepare one mask for
    each)."""
    if config.method == "none" or config.shrink:
        return []
    if config.method == "structured":
        leaves = ("attn.c_attn.w", "attn.c_attn.b", "attn.c_proj.w")
        leaves += ("mlp.c_fc.w", "mlp.c_fc.b", "mlp.c_proj.w")
        if spec.model == "llama":
            leaves = llama_pruning.MASKABLE_LEAVES
        return [f"h.{i}.{leaf}" for i in range(spec.n_layer) for leaf in leaves]
    return prunable(spec)


def magnitude_masks(
    weights: dict[str, np.ndarray], names: Sequence[str], sparsity: float
) -> dict[str, np.ndarray]:
    """Global unstructured masks: exactly round(sparsity · n) weights pruned over all `names`, the
    smallest |w| of their concatenation (neutral layouts, in `names` order); among weights equal
    to the k-th smallest, the first ones in that order (a stable argsort's choice).

    Computed with a selection, not a sort: the threshold t is the k-th smallest |w|; everything
    below it is pruned, then the first ties at t until k are. Backends that compute masks on their
    device (Trainer.prune_magnitude) follow exactly this rule."""
    flat = np.concatenate([np.abs(weights[n].astype(np.float32)).ravel() for n in names])
    k = int(round(sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    if k:
        threshold = np.partition(flat, k - 1)[k - 1]
        below = flat < threshold
        ties = flat == threshold
        need = k - int(below.sum())  # ≥ 1: the threshold itself is among the k smallest
        keep = ~(below | (ties & (np.cumsum(ties) <= need)))
    masks, offset = {}, 0
    for n in names:
        size = weights[n].size
        masks[n] = keep[offset : offset + size].reshape(weights[n].shape)
        offset += size
    return masks


def n_m_masks(weights: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """2:4 along the input dimension (axis 0 of a neutral (in, out) kernel): keep the 2 largest of
    4."""
    n, m = N_M
    masks = {}
    for name in names:
        w = np.abs(weights[name].astype(np.float32))
        d_in, d_out = w.shape
        if d_in % m:
            raise ValueError(f"2:4 pruning: {name} has {d_in} inputs, not a multiple of {m}")
        groups = w.reshape(d_in // m, m, d_out)  # (groups, 4, out)
        order = np.argsort(groups, axis=1, kind="stable")  # ascending: the first n are pruned
        keep = np.ones_like(groups, dtype=bool)
        np.put_along_axis(keep, order[:, :n, :], False, axis=1)
        masks[name] = keep.reshape(d_in, d_out)
    return masks


def structured_units(
    spec: ModelSpec, weights: dict[str, np.ndarray], sparsity: float
) -> dict[int, dict[str, np.ndarray]]:
    """Per GPT layer, which heads and MLP neurons to keep (boolean vectors), by the L2 norm of
    their weights."""
    if spec.model not in STRUCTURED_MODELS:
        raise ValueError(
            "structured pruning removes attention heads and MLP neurons; only the "
            f"{' and '.join(STRUCTURED_MODELS)} workloads have them"
        )
    if spec.model == "llama":
        return llama_pruning.structured_units(spec, weights, sparsity)
    d, H = spec.d_model, spec.n_head
    hs = d // H
    kept: dict[int, dict[str, np.ndarray]] = {}
    for i in range(spec.n_layer):
        p = f"h.{i}."
        w_attn, b_attn = (
            weights[p + "attn.c_attn.w"],
            weights[p + "attn.c_attn.b"],
        )  # (d, 3d), (3d,)
        w_proj = weights[p + "attn.c_proj.w"]  # (d, d): rows are the heads' outputs
        head_sq = np.zeros(H)
        for part in range(3):  # q, k, v
            cols = w_attn[:, part * d : (part + 1) * d].reshape(d, H, hs)
            head_sq += (cols.astype(np.float64) ** 2).sum(axis=(0, 2))
            head_sq += (
                b_attn[part * d : (part + 1) * d].reshape(H, hs).astype(np.float64) ** 2
            ).sum(axis=1)
        head_sq += (w_proj.reshape(H, hs, d).astype(np.float64) ** 2).sum(axis=(1, 2))
        w_fc, b_fc, w_out = (
            weights[p + "mlp.c_fc.w"],
            weights[p + "mlp.c_fc.b"],
            weights[p + "mlp.c_proj.w"],
        )
        neuron_sq = (
            (w_fc.astype(np.float64) ** 2).sum(axis=0)
            + b_fc.astype(np.float64) ** 2
            + (w_out.astype(np.float64) ** 2).sum(axis=1)
        )
        kept[i] = {
            "heads": _keep_largest(head_sq, sparsity),
            "neurons": _keep_largest(neuron_sq, sparsity),
        }
    return kept


def _keep_largest(scores: np.ndarray, sparsity: float) -> np.ndarray:
    k = int(round(sparsity * scores.size))
    if k >= scores.size:
        k = scores.size - 1  # keep at least one head / neuron per layer
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:k]] = False
    return keep


def structured_masks(
    spec: ModelSpec, units: dict[int, dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Element masks (kernels and biases) that zero the pruned heads and neurons."""
    if spec.model == "llama":
        return llama_pruning.structured_masks(spec, units)
    d, H = spec.d_model, spec.n_head
    hs = d // H
    masks = {}
    for i, keep in units.items():
        p = f"h.{i}."
        head_cols = np.repeat(keep["heads"], hs)  # (d,): which of the d attention features survive
        masks[p + "attn.c_attn.w"] = np.broadcast_to(
            np.tile(head_cols, 3)[None, :], (d, 3 * d)
        ).copy()
        masks[p + "attn.c_attn.b"] = np.tile(head_cols, 3)
        masks[p + "attn.c_proj.w"] = np.broadcast_to(head_cols[:, None], (d, d)).copy()
        neurons = keep["neurons"]
        masks[p + "mlp.c_fc.w"] = np.broadcast_to(neurons[None, :], (d, neurons.size)).copy()
        masks[p + "mlp.c_fc.b"] = neurons.copy()
        masks[p + "mlp.c_proj.w"] = np.broadcast_to(neurons[:, None], (neurons.size, d)).copy()
    return masks


def compute_masks(
    spec: ModelSpec, weights: dict[str, np.ndarray], config: PruningConfig, sparsity: float
) -> dict[str, np.ndarray]:
    """Masks (True = keep) for one pruning event at `sparsity`."""
    if config.method == "magnitude":
        return magnitude_masks(weights, prunable(spec), sparsity)
    if config.method == "2:4":
        return n_m_masks(weights, prunable(spec))
    if config.method == "structured":
        return structured_masks(spec, structured_units(spec, weights, sparsity))
    raise ValueError(f"no masks for pruning method {config.method!r}")


def sparsity_report(
    spec: ModelSpec, weights: dict[str, np.ndarray], config: PruningConfig
) -> dict[str, Any]:
    """Achieved sparsity (fraction of exact zeros), per prunable kernel and over all of them, plus
    parameter counts; measured on the weights as they are, not on the masks."""
    names = (
        prunable(spec)
        if config.method != "structured"
        else [n for n in prunable(spec) if n.startswith("h.")]
    )
    per_layer = {n: float(np.mean(weights[n] == 0)) for n in names}
    total = sum(weights[n].size for n in names)
    zeros = sum(int(np.sum(weights[n] == 0)) for n in names)
    n_params = sum(w.size for w in weights.values())
    nonzero = sum(int(np.count_nonzero(w)) for w in weights.values())
    return {
        "sparsity_global": zeros / total if total else 0.0,  # over the kernels the method prunes
        "sparsity_per_layer": per_layer,
        "n_params": int(n_params),  # parameters the trained model has (after shrink, if any)
        "n_params_nonzero": int(nonzero),
    }


def check_n_m(weights: dict[str, np.ndarray], names: Sequence[str]) -> bool:
    """Every group of 4 consecutive inputs holds at least 2 zeros (2:4 holds)."""
    n, m = N_M
    for name in names:
        w = weights[name]
        zeros = (w.reshape(w.shape[0] // m, m, w.shape[1]) == 0).sum(axis=1)
        if (zeros < n).any():
            return False
    return True


def shrunk_shapes(spec: ModelSpec, units: dict[int, dict[str, np.ndarray]]) -> dict[str, int]:
    """Heads and MLP width left per layer after `shrink` (uniform across layers by construction)."""
    heads = {int(u["heads"].sum()) for u in units.values()}
    neurons = {int(u["neurons"].sum()) for u in units.values()}
    assert len(heads) == 1 and len(neurons) == 1, (
        "structured pruning keeps the same count in every layer"
    )
    return {
        "n_head_kept": heads.pop(),
        "d_mlp_kept": neurons.pop(),
        "d_head": spec.d_model // spec.n_head,
    }


def shrink_weights(
    spec: ModelSpec, weights: dict[str, np.ndarray], units: dict[int, dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The weights with pruned heads and neurons physically removed (neutral layout)."""
    if spec.model == "llama":
        return llama_pruning.shrink_weights(spec, weights, units)
    d, H = spec.d_model, spec.n_head
    hs = d // H
    out = dict(weights)
    for i, keep in units.items():
        p = f"h.{i}."
        cols = np.repeat(keep["heads"], hs)
        qkv = np.concatenate([cols, cols, cols])
        out[p + "attn.c_attn.w"] = np.ascontiguousarray(weights[p + "attn.c_attn.w"][:, qkv])
        out[p + "attn.c_attn.b"] = np.ascontiguousarray(weights[p + "attn.c_attn.b"][qkv])
        out[p + "attn.c_proj.w"] = np.ascontiguousarray(weights[p + "attn.c_proj.w"][cols, :])
        neurons = keep["neurons"]
        out[p + "mlp.c_fc.w"] = np.ascontiguousarray(weights[p + "mlp.c_fc.w"][:, neurons])
        out[p + "mlp.c_fc.b"] = np.ascontiguousarray(weights[p + "mlp.c_fc.b"][neurons])
        out[p + "mlp.c_proj.w"] = np.ascontiguousarray(weights[p + "mlp.c_proj.w"][neurons, :])
    return out


def expected_sparsity(spec: ModelSpec, config: PruningConfig) -> float:
    """What `sparsity_global` should be at the end of a cell (for tests and reports)."""
    if config.method == "none":
        return 0.0
    if config.method == "2:4":
        return N_M[0] / N_M[1]
    if config.method == "structured":  # heads and neurons alike when rounding agrees
        units = getattr(spec, "n_kv_head", spec.n_head)  # llama prunes whole key/value groups
        return round(config.sparsity * units) / units
    return config.sparsity


def describe(config: PruningConfig) -> str:
    if config.method == "none":
        return "none"
    if config.method == "2:4":
        return "2:4"
    text = f"{config.method} {config.sparsity:.0%}"
    return (
        text
        + (" shrink" if config.shrink else "")
        + (" gradual" if config.schedule == "gradual" else "")
    )


def shrunk_spec(spec: ModelSpec, units: dict[int, dict[str, np.ndarray]]) -> ModelSpec:
    """The architecture after `shrink`: same model, fewer heads and MLP neurons in every layer."""
    shapes = shrunk_shapes(spec, units)
    return dataclasses.replace(spec, n_head_kept=shapes["n_head_kept"], d_mlp=shapes["d_mlp_kept"])
