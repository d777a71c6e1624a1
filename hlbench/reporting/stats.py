"""Small, deterministic statistics for effects: bootstrap medians and intervals of their ratios.

Speed effects are ratios of median step times. Their spread comes from a bootstrap over the pooled
per-step times of each cell (all ok repeats): BOOTSTRAP_RESAMPLES medians per cell, drawn once from
the exact bootstrap distribution of the median with a generator seeded from the cell's hash, so that
a report is byte-identical however often it is built and whatever other cells it holds. The interval
of a ratio pairs the two cells' bootstrap medians; an effect whose 95% interval includes 1.0 is
"within noise".

Caveat, stated in the report: pooling steps treats them as independent, which understates the spread
between worker processes when repeats differ systematically; more repeats make that visible in the
window CV warning instead.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
INTERVAL = (2.5, 97.5)  # percentiles of a 95% interval


def _seed(key: str) -> int:
    # A cell hash is 16 hex digits; other keys fold to a stable integer without Python's salted
    # hash().
    try:
        return int(key, 16) % 2**63
    except ValueError:
        return sum((i + 1) * ord(ch) for i, ch in enumerate(key)) % 2**63


def bootstrap_medians(samples: np.ndarray, seed: str) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES draws from the bootstrap distribution of the median (empty without
    samples).

    Drawn without resampling: the k-th order statistic of n draws with replacement from sorted x is
    ≤ x[i] iff at least k draws are ≤ x[i], which has probability P(Binomial(n, (i+1)/n) ≥ k) =
    I_{(i+1)/n}(k, n − k + 1) (the regularized incomplete beta). Inverting that CDF with uniform
    draws costs O(n + B log n) instead of the O(B·n) of resampling, which matters for 10,000-record
    reports. For even n the median is the midpoint of order statistics n/2 and n/2 + 1, both drawn
    with the same uniform (a comonotone coupling: it matches brute-force resampling closely, bimodal
    samples included).
    """
    if len(samples) == 0:
        return np.empty(0)
    from scipy.special import betainc

    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    p = np.arange(1, n + 1) / n
    u = np.random.default_rng(_seed(seed)).random(BOOTSTRAP_RESAMPLES)

    def order_statistic(k: int) -> np.ndarray:
        return x[np.minimum(np.searchsorted(betainc(k, n - k + 1, p), u), n - 1)]

    if n % 2:
        return order_statistic((n + 1) // 2)
    return (order_statistic(n // 2) + order_statistic(n // 2 + 1)) / 2


def ratio_interval(
    numerator: np.ndarray, denominator: np.ndarray
) -> tuple[float | None, float | None]:
    """95% interval of numerator/denominator from paired bootstrap draws (None if one is empty)."""
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
