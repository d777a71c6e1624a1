"""Precision setup for the PyTorch trainer (the levels of hlbench.techniques.precision), nanoGPT
style: no-op objects instead of branches.

- fp32: no autocast (a nullcontext), TF32 off; tf32: TF32 matmuls on (CUDA, compute
  capability ≥ 8.0);
- bf16 / fp16: torch.autocast(device, dtype) around forward and loss, fp32 master weights; fp16 adds
  torch.amp.GradScaler (a disabled scaler is a no-op for the other levels). Gradients are unscaled
  before clipping (`scaler.unscale_`), and a step with a non-finite gradient is skipped by the
  scaler;
- bf16-pure: the model cast to bfloat16 after loading the fp32 weights, so parameters, gradients and
  AdamW's moments are bf16 (the fused CPU/CUDA AdamW computes each update in fp32 and stores bf16);
- fp8: torchao's float8 linear layers inside bf16 autocast (CUDA, compute capability ≥ 8.9).
The loss is taken on fp32 logits at every level (autocast does the same for cross_entropy).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from hlbench.errors import SkipCell
from hlbench.techniques import precision

DTYPES = {
    precision.FLOAT32: torch.float32,
    precision.BFLOAT16: torch.bfloat16,
    precision.FLOAT16: torch.float16,
}

# Why a level needs a particular GPU, for the skip reason.
DEVICE_NEEDS = {
    "tf32": "tf32 needs an NVIDIA Ampere or newer GPU",
    "fp8": "fp8 needs an NVIDIA Ada, Hopper or newer GPU",
}

FLOAT8_ALIGNMENT = 16  # float8 GEMMs need both dimensions of a weight to be multiples of this


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def set_fp32_exact() -> None:
    """fp32 means fp32: no TF32 in matmuls or convolutions (PyTorch's default already, made
    explicit)."""
    set_tf32(False)


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on (the tf32 level) or off (every other
    level)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def tf32_matmuls_on(device: torch.device) -> bool:
    """Whether fp32 matmuls on `device` may run in TF32 (only CUDA has TF32)."""
    return bool(torch.backends.cuda.matmul.allow_tf32) and device.type == "cuda"


def require_device_for(level: precision.Level, device: torch.device) -> None:
    """SkipCell, with the reason, when `device` cannot run `level` (never a silent fallback)."""
    if level.min_cuda_capability is None:
        return
    need = ".".join(map(str, level.min_cuda_capability))
    if (
        device.type != "cuda"
        or torch.cuda.get_device_capability(device) < level.min_cuda_capability
    ):
        raise SkipCell(
            f"{DEVICE_NEEDS.get(level.name, level.name)} (compute capability ≥ {need}); "
            f"this cell's device is {_describe(device)}"
        )
    if level.name == "fp8":
        try:
            import torchao.float8  # noqa: F401
        except ImportError as exc:
            raise SkipCell(
                f"fp8 needs torchao (pip install torchao), which is not importable here: {exc}"
            ) from None


def _describe(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return f"{device} ({torch.cuda.get_device_name(device)}, compute capability {capability})"


def convert_to_float8(model: nn.Module) -> int:
    """torchao's float8 training on every nn.Linear whose dimensions float8 GEMMs accept (multiples
    of 16); returns how many were converted. The tied GPT head (F.linear on wte) stays in bf16
    autocast."""
    from torchao.float8 import convert_to_float8_training

    def eligible(module: nn.Module, fqn: str) -> bool:
        return (
            isinstance(module, nn.Linear)
            and module.in_features % FLOAT8_ALIGNMENT == 0
            and module.out_features % FLOAT8_ALIGNMENT == 0
        )

    convert_to_float8_training(model, module_filter_fn=eligible)
    return sum(type(m).__name__ == "Float8Linear" for m in model.modules())


def grad_scaler(level: precision.Level, device: torch.device) -> torch.amp.GradScaler:
    """Dynamic loss scaling for the levels that need it; a disabled (no-op) scaler for the
    others."""
    return torch.amp.GradScaler(
        device.type,
        init_scale=precision.LOSS_SCALE_INIT,
        growth_factor=precision.LOSS_SCALE_GROWTH_FACTOR,
        backoff_factor=precision.LOSS_SCALE_BACKOFF_FACTOR,
        growth_interval=precision.LOSS_SCALE_GROWTH_INTERVAL,
        enabled=level.loss_scaling,
    )


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Autocast to `dtype` for the mixed levels, a no-op context where `dtype` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe_applied(
    param_dtype: torch.dtype,
    autocast_dtype: torch.dtype | None,
    float8_linear_modules: int,
    scaler: torch.amp.GradScaler,
    device: torch.device,
) -> str:
    """What a trainer applied, in the framework's own terms."""
    parts = [f"parameters {dtype_name(param_dtype)}"]
    if autocast_dtype is not None:
        parts.append(f"torch.autocast({dtype_name(autocast_dtype)})")
    if float8_linear_modules:
        parts.append(f"torchao Float8Linear ×{float8_linear_modules}")
    if scaler.is_enabled():
        parts.append("torch.amp.GradScaler")
    if tf32_matmuls_on(device):
        parts.append("TF32 matmuls")
    return " + ".join(parts)
