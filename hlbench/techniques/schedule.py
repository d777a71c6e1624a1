"""The learning-rate schedule: constant, or GPT-2's linear warmup then cosine decay.

Defined on the optimizer step s = 1, 2, ... (the s-th call of the trainer's step, counting the
steps fp16's loss scale skips, as torch.optim.lr_scheduler advances once per step whatever the
scaler did), with W = lr_warmup_steps, D = lr_decay_steps and α = lr_min_ratio:

    s <  W:  lr · s / W                                     (the first step already moves)
    s >= W:  lr · (α + (1 - α) · ½(1 + cos(π · min(s - W, D - W) / (D - W))))

so the rate reaches lr at step W, lr · α at step D, and stays there. This is keras.optimizers.
schedules.CosineDecay(0, D - W, alpha=α, warmup_target=lr, warmup_steps=W) at step s, which the
TensorFlow backend runs in its compiled step; the PyTorch backend runs this function through
torch.optim.lr_scheduler.LambdaLR. Framework-free, so both backends and the tests share one
definition.
"""

from __future__ import annotations

import math

from hlbench.cell import Optimizer

CONSTANT = "constant"
COSINE = "cosine"
SCHEDULES = (CONSTANT, COSINE)


def lr_at(opt: Optimizer, step: int) -> float:
    """The learning rate of optimizer step `step` (1-based) under `opt`'s schedule."""
    if opt.lr_schedule == CONSTANT:
        return opt.lr
    if opt.lr_decay_steps is None:
        raise ValueError("a cosine schedule needs lr_decay_steps (resolved when cells are made)")
    warmup, decay = opt.lr_warmup_steps, opt.lr_decay_steps
    if step < warmup:
        return opt.lr * step / warmup
    progress = min(step - warmup, decay - warmup) / (decay - warmup)
    alpha = opt.lr_min_ratio
    return opt.lr * (alpha + (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_factor(opt: Optimizer, step: int) -> float:
    """lr_at / lr: the multiplier LambdaLR applies to the base rate."""
    return lr_at(opt, step) / opt.lr
