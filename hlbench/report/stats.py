"""Small, deterministic statistics for effects: bootstrap medians and intervals of their ratios.

Speed effects are ratios of median step times. Their spread comes from a bootstrap over the pooled
per-step times of each cell (all ok repeats): BOOTSTRAP_RESAMPLES medians per cell, drawn once with a
generator seeded from the cell's hash, so that a report is byte-identical however often it is built and
whatever other cells it holds. The interval of a ratio pairs the two cells' bootstrap medians; an effect
whose 95% interval includes 1.0 is "within noise".

Caveat, stated in the report: pooling steps treats them as independent, which understates the spread
between worker processes when repeats differ systematically; more repeats make that visible in the
window CV warning instead.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 200
INTERVAL = (2.5, 97.5)  # percentiles of a 95% interval
MAX_BOOTSTRAP_SAMPLES = 2000  # beyond this a median's bootstrap spread no longer changes the verdict


def _seed(key: str) -> int:
    # A cell hash is 16 hex digits; other keys fold to a stable integer without Python's salted hash().
    try:
        return int(key, 16) % 2**63
    except ValueError:
        return sum((i + 1) * ord(ch) for i, ch in enumerate(key)) % 2**63


def bootstrap_medians(samples: np.ndarray, seed: str) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES medians of resamples of `samples` (empty when there are no samples)."""
    if len(samples) == 0:
        return np.empty(0)
    rng = np.random.default_rng(_seed(seed))
    n = min(len(samples), MAX_BOOTSTRAP_SAMPLES)
    picks = rng.integers(0, len(samples), size=(BOOTSTRAP_RESAMPLES, n))
    return np.median(samples[picks], axis=1)


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float | None, float | None]:
    """95% interval of numerator/denominator from paired bootstrap draws (None when either is empty)."""
    if len(numerator) == 0 or len(denominator) == 0:
        return None, None
    lo, hi = np.percentile(numerator / denominator, INTERVAL)
    return float(lo), float(hi)


def pairwise_range(a: np.ndarray, b: np.ndarray, op: str) -> tuple[float | None, float | None]:
    """Min and max of a_i / b_j (op 'ratio') or a_i - b_j (op 'diff') over all repeat pairs."""
    if len(a) == 0 or len(b) == 0:
        return None, None
    values = a[:, None] / b[None, :] if op == "ratio" else a[:, None] - b[None, :]
    return float(values.min()), float(values.max())


def includes(lo: float | None, hi: float | None, value: float) -> bool:
    return lo is not None and hi is not None and lo <= value <= hi
