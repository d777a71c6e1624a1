"""AdamW for the PyTorch trainer: the weight-decay groups of the workload's spec, the fused kernel
where the build has one, and AdamW's moments (for dtype checks, masks and the record's byte
counts)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

# torch.optim's constructor imports torch._dynamo (~1 s) on first use; imported with this module, a
# pre-imported worker (hlbench.worker.zygote) pays it once per run instead of once per cell.
import torch._dynamo
from torch import nn

from hlbench.cell import Optimizer
from hlbench.techniques import schedule
from hlbench.workloads import ModelSpec

# fp16: GradScaler skips a step whose gradients overflowed, and the schedule still advances (the
# rate is a function of the step count); torch warns once about that order, intended here.
warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")

MOMENT_KEYS = ("exp_avg", "exp_avg_sq")  # AdamW's first and second moments in optimizer.state


def param_groups(
    param_map: dict[str, tuple[nn.Parameter, bool]], spec: ModelSpec, weight_decay: float
) -> tuple[list[dict[str, Any]], list[nn.Parameter]]:
    """The decayed and the undecayed parameters as AdamW groups (the spec says which is which), and
    all parameters in the groups' order."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, (param, _) in param_map.items():
        (decay if spec.decayed(name) else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return groups, decay + no_decay


def make_adamw(
    groups: list[dict[str, Any]], opt: Optimizer, device: torch.device
) -> tuple[torch.optim.AdamW, str]:
    """AdamW with the fused kernel where this build supports it on `device`, else the foreach
    one."""
    kwargs = dict(lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs), "fused"
    except (RuntimeError, ValueError):  # fused not implemented for this device or dtype
        return torch.optim.AdamW(groups, foreach=True, **kwargs), "foreach"


def moments(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every AdamW moment tensor (none before the first step)."""
    return [t for state in optimizer.state.values() for k, t in state.items() if k in MOMENT_KEYS]


def make_scheduler(
    optimizer: torch.optim.Optimizer, opt: Optimizer
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """The suite's schedule as a LambdaLR (stepped once per optimizer step); None for a constant
    rate. LambdaLR's counter k starts at 0 for the first step, which is schedule step k + 1."""
    if opt.lr_schedule == schedule.CONSTANT:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: schedule.lr_factor(opt, k + 1))
