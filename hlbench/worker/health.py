"""Training-health figures of every cell, per optimizer step: the gradient norm before clipping,
whether the step was clipped, non-finite steps, and loss spikes.

The backends keep each step's global gradient norm on the device (the one clipping computes, after
fp16's unscaling) and hand them over with the losses after the windows, so reading them adds no
host sync to a step (Trainer.grad_norms_to_floats). Everything else is derived here, on the host:

- clipped: the step's norm exceeded the clip, as torch.nn.utils.clip_grad_norm_ decides it (scale
  min(1, clip / (norm + 1e-6)) < 1; the TensorFlow backend uses the same formula);
- non-finite: steps whose gradient norm or loss is NaN or infinite (fp16's loss scaling skips such
  steps and counts them: `overflow_skipped_steps`, the backend's own count, beside it);
- loss spike: a step whose loss exceeds the median of the previous SPIKE_WINDOW_STEPS steps by more
  than SPIKE_MADS robust standard deviations of the step-to-step noise and by at least
  SPIKE_MIN_RELATIVE of that median. The noise is estimated from the changes between consecutive
  steps of that history (1.4826 × their median absolute deviation, MAD, / √2), not from the
  losses themselves, so a steeply falling loss early in training does not inflate it and hide a
  spike; the relative floor keeps a loss that is flat to the last digit (MAD 0) from turning
  rounding into spikes. A falling loss keeps its recent median above the current step, so
  ordinary progress is never a spike.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

CLIP_EPS = 1e-6  # what torch.nn.utils.clip_grad_norm_ adds to the norm
SPIKE_WINDOW_STEPS = 20
SPIKE_MADS = 6.0
SPIKE_MIN_RELATIVE = 0.01
MAD_TO_SIGMA = 1.4826  # MAD × this estimates the standard deviation of a normal sample


def loss_spikes(losses: list[float]) -> list[int]:
    """Indices of the steps that are loss spikes (module docstring); none before
    SPIKE_WINDOW_STEPS steps of history."""
    x = np.asarray(losses, dtype=np.float64)
    k = SPIKE_WINDOW_STEPS
    if len(x) <= k:
        return []
    history = np.lib.stride_tricks.sliding_window_view(x[:-1], k)  # row i: steps i .. i+k-1
    current = x[k:]
    steps = np.diff(history, axis=1)  # step-to-step changes: the noise, free of the trend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN history row has no median
        median = np.nanmedian(history, axis=1)
        centred = np.abs(steps - np.nanmedian(steps, axis=1)[:, None])
        sigma = np.nanmedian(centred, axis=1) * MAD_TO_SIGMA / math.sqrt(2)
    margin = np.maximum(SPIKE_MADS * sigma, SPIKE_MIN_RELATIVE * np.abs(median))
    with np.errstate(invalid="ignore"):
        spike = np.isfinite(current) & np.isfinite(median) & (current > median + margin)
    return [int(i) + k for i in np.flatnonzero(spike)]


def _finite_or_none(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def section(
    train_losses: list[float],
    grad_norms: list[float] | None,
    grad_clip_norm: float | None,
    overflow_skipped_steps: int | None,
) -> dict[str, Any]:
    """The record's `health`: per-step lists indexed like loss.train_loss_per_step (warmup
    included), and their counts."""
    losses = [float(v) for v in train_losses]
    out: dict[str, Any] = {
        "grad_norm_per_step": None,
        "grad_norm_reason": None,
        "grad_clip_norm": grad_clip_norm,
        "clipped_per_step": None,
        "clipped_steps": None,
        "clipped_fraction": None,
        "grad_norm_median": None,
        "grad_norm_max": None,
        "nonfinite_grad_steps": None,
        "nonfinite_loss_steps": [i for i, v in enumerate(losses) if not math.isfinite(v)],
        "overflow_skipped_steps": overflow_skipped_steps,
        "loss_spike_steps": loss_spikes(losses),
        "loss_spike_rule": {
            "window_steps": SPIKE_WINDOW_STEPS,
            "mads": SPIKE_MADS,
            "min_relative": SPIKE_MIN_RELATIVE,
        },
    }
    if grad_norms is None:
        out["grad_norm_reason"] = "the backend does not report gradient norms"
        return out
    norms = [float(v) for v in grad_norms]
    finite = [v for v in norms if math.isfinite(v)]
    clipped = [
        grad_clip_norm is not None and math.isfinite(v) and v + CLIP_EPS > grad_clip_norm
        for v in norms
    ]
    out.update(
        grad_norm_per_step=_finite_or_none(norms),
        clipped_per_step=clipped,
        clipped_steps=sum(clipped),
        clipped_fraction=sum(clipped) / len(finite) if finite else None,
        grad_norm_median=float(np.median(finite)) if finite else None,
        grad_norm_max=max(finite) if finite else None,
        nonfinite_grad_steps=[i for i, v in enumerate(norms) if not math.isfinite(v)],
    )
    return out
