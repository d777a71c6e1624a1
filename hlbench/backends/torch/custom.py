"""Building a custom (`model: custom`) or Hugging Face (`model: hf`) PyTorch model for a cell.

The module is built once, on the CPU in float32, after `torch.manual_seed(cell seed)`, so its
initial weights are its own initialisation, reproducible from the seed. `build_spec` returns the
spec with what a built-in spec states (hlbench.workloads.custom.Built): parameter names (the
module's own; trainable parameters only, a shared tensor once) and shapes in the neutral layout
(an nn.Linear weight transposed to (in, out)), the linear kernels pruning acts on (nn.Linear
weights that are not also an embedding: a tied head is the embedding), float32 copies of the
initial weights, and FLOPs per token counted with torch.utils.flop_counter.FlopCounterMode over a
forward and backward of one sequence at the cell's length (on the meta device, shapes only; on the
CPU if the model cannot be built there). The same pass checks the model's output: (1, T, V) logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from hlbench.cell import Cell
from hlbench.errors import SkipCell
from hlbench.workloads import custom
from hlbench.workloads.custom import Built, CustomModelError, CustomSpec

HF_EXTRA = 'pip install "hlbench[hf]"'


class HFLogits(nn.Module):
    """A transformers causal LM as hlbench trains it: ids (B, T) -> logits (B, T, V), no KV cache
    (training), hlbench's own loss (the model's `labels` loss is not used)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=idx, use_cache=False).logits


def hf_module(spec: CustomSpec) -> nn.Module:
    """The architecture from the suite's config keys, randomly initialised: nothing is
    downloaded (no from_pretrained, no hub config)."""
    try:
        import transformers
    except ImportError:
        raise CustomModelError(
            f"model hf needs the 'transformers' package, which is not installed; {HF_EXTRA}"
        ) from None
    cls = getattr(transformers, str(spec.architecture), None)
    config_class = getattr(cls, "config_class", None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module) or config_class is None:
        raise CustomModelError(
            f"transformers {transformers.__version__} has no PyTorch model class "
            f"{spec.architecture!r}"
        )
    # a config class keeps unknown keys as attributes: a typo would silently train the default
    unknown = sorted(set(spec.config or {}) - set(config_class().to_dict()))
    if unknown:
        raise CustomModelError(
            f"{config_class.__name__} has no key(s) {', '.join(map(repr, unknown))}"[:300]
        )
    try:
        config = config_class(**(spec.config or {}))
        model = cls(config)
    except Exception as exc:
        raise CustomModelError(
            f"{spec.architecture} from config: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        ) from None
    return HFLogits(model)


def constructor(spec: CustomSpec, seq_len: int) -> tuple[str, Callable[[], Any]]:
    """A label for messages and the call that builds the model."""
    if spec.model == "hf":
        return str(spec.architecture), lambda: hf_module(spec)
    ref = spec.factory_for("torch")
    if ref is None:
        raise SkipCell("this custom workload names no torch factory (factory: {torch: ...})")
    implicit = {"vocab_size": spec.vocab_size, "seq_len": seq_len}
    return ref, lambda: custom.call_factory(ref, spec.kwargs or {}, implicit)


def build_spec(cell: Cell, spec: CustomSpec) -> CustomSpec:
    """The spec of the model the cell trains, built (the module rides along in `built`)."""
    seq_len = cell.workload.seq_len
    label, make = constructor(spec, seq_len)
    torch.manual_seed(cell.seed)
    module = make()
    if not isinstance(module, nn.Module):
        raise CustomModelError(
            f"{label} returned {type(module).__name__}; expected a torch.nn.Module"
        )
    module = module.float().train()
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise CustomModelError(f"{label}: the module has no trainable parameters")
    embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    linear = {id(m.weight) for m in module.modules() if isinstance(m, nn.Linear)}
    # a head tied to an embedding is that embedding: neither transposed nor pruned
    kernels = tuple(n for n, p in params.items() if id(p) in linear and id(p) not in embeddings)
    transposed = frozenset(kernels)
    weights = {n: _neutral(p, n in transposed) for n, p in params.items()}
    flops, source = count_flops(label, make, module, seq_len, spec.vocab_size)
    built = Built(
        shapes={n: tuple(w.shape) for n, w in weights.items()},
        kernels=kernels,  # in the module's order
        weights=weights,
        transposed=transposed,
        seq_len=seq_len,
        flops_per_token=flops,
        flops_source=source,
        module=module,
    )
    return custom.remember(dataclasses.replace(spec, built=built))


def _neutral(param: torch.Tensor, transposed: bool) -> np.ndarray:
    array = param.detach().cpu().numpy()
    return np.array(array.T if transposed else array, dtype=np.float32, order="C")


def count_flops(
    label: str, make: Callable[[], Any], module: nn.Module, seq_len: int, vocab_size: int
) -> tuple[float, str]:
    """Training FLOPs per token (forward + backward of one sequence of `seq_len`) and how they
    were counted. A model the meta device cannot build or run is counted on the CPU."""
    try:
        with torch.device("meta"):
            meta = make()
        return _count(label, meta, torch.device("meta"), seq_len, vocab_size), "counter (meta)"
    except CustomModelError:
        raise
    except Exception:  # e.g. a factory that builds on an explicit device, or NumPy init
        pass
    try:
        module.eval()  # no update of running statistics (batch norm) before training
        flops = _count(label, module, torch.device("cpu"), seq_len, vocab_size)
    except CustomModelError:
        raise
    except Exception as exc:  # the user's forward: its failure is the factory's
        raise CustomModelError(
            f"{label}: forward of ids (1, {seq_len}) failed: "
            f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        ) from None
    finally:
        module.train()
    module.zero_grad(set_to_none=True)
    return flops, "counter (cpu, 1 sequence)"


def _count(
    label: str, module: nn.Module, device: torch.device, seq_len: int, vocab_size: int
) -> float:
    idx = torch.zeros((1, seq_len), dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    # the math attention kernel is matmuls the counter sees (the CPU's fused one is not counted)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        logits = module(idx)
        if not isinstance(logits, torch.Tensor):
            raise CustomModelError(
                f"{label}: the model returned {type(logits).__name__} for ids (1, {seq_len}); "
                "expected a logits tensor"
            )
        custom.check_logits_shape(label, logits.shape, 1, seq_len, vocab_size)
        logits.float().sum().backward()
    return counter.get_total_flops() / seq_len
