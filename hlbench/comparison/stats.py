"""Distribution-free statistics over a few independent runs per side: the exact null distribution of
the Mann–Whitney U statistic, its two-sided p-value, and the matching confidence interval for a
shift (Hodges–Lehmann), all for the handful of runs a benchmark can afford.

Samples here are per-run estimates (one number per worker process), so sizes are small (2–50) and
exact computation is cheap. The interval is for a shift in location, applied to log values: a
shift of log(tokens/s) is a ratio of tokens/s, which is what a relative change means.

With n and m runs, the smallest two-sided p-value is 2 / C(n + m, n): 3 vs 3 can never reach
alpha 0.05 (p ≥ 0.1), 5 vs 5 just reaches 0.01 (0.0079). `interval` returns None when the sizes
cannot reach the asked confidence, and that makes the verdict `inconclusive`, not a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=256)
def u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n + m, n) orderings give U = 0, 1, …, n·m (no ties).

    The counts are the coefficients of the Gaussian binomial [n + m choose m]_q, built as the
    product over i = 1..m of (1 − q^(n+i)) / (1 − q^i); every division is exact."""
    size = n * m + n + m + 1  # room for the degree before each division
    poly = [0] * size
    poly[0] = 1
    for i in range(1, m + 1):
        shift = n + i
        for k in range(size - 1, shift - 1, -1):  # × (1 − q^shift), high to low in place
            poly[k] -= poly[k - shift]
        for k in range(i, size):  # ÷ (1 − q^i), low to high in place
            poly[k] += poly[k - i]
    return tuple(poly[: n * m + 1])


def lower_tail(n: int, m: int, u: int) -> float:
    """P(U ≤ u) under the null hypothesis (exact, no ties)."""
    counts = u_counts(n, m)
    return sum(counts[: u + 1]) / math.comb(n + m, n)


def smallest_p(n: int, m: int) -> float:
    """The smallest two-sided p-value n vs m samples can give (complete separation)."""
    return min(1.0, 2.0 / math.comb(n + m, n))


def can_reach(n: int, m: int, alpha: float) -> bool:
    return n > 0 and m > 0 and smallest_p(n, m) <= alpha


def fewest_runs(alpha: float) -> int:
    """The fewest runs per side (equal sides) with which a two-sided test can reach alpha."""
    n = 1
    while not can_reach(n, n, alpha):
        n += 1
    return n


def p_value(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p-value (scipy: exact for small untied samples); 1.0 when every
    sample is equal (no evidence of a change)."""
    from scipy.stats import mannwhitneyu  # imported here: `hlbench --help` stays fast

    if len(set(baseline) | set(candidate)) == 1:
        return 1.0  # all ties: scipy would return nan
    p = float(mannwhitneyu(candidate, baseline, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def interval(
    baseline: Sequence[float], candidate: Sequence[float], alpha: float
) -> tuple[float, float] | None:
    """A (1 − alpha) confidence interval for the shift candidate − baseline: the order statistics
    of the n·m pairwise differences that the exact U distribution picks (the interval that goes
    with the Mann–Whitney test and the Hodges–Lehmann estimate). None when n vs m runs cannot
    reach that confidence."""
    n, m = len(baseline), len(candidate)
    if not can_reach(n, m, alpha):
        return None
    # c = the largest rank with P(U ≤ c − 1) ≤ alpha / 2; can_reach guarantees c ≥ 1.
    c = 1
    while lower_tail(n, m, c) <= alpha / 2:
        c += 1
    diffs = sorted(y - x for x in baseline for y in candidate)
    return diffs[c - 1], diffs[len(diffs) - c]


def hodges_lehmann(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """The median of all pairwise differences candidate − baseline: the shift estimate."""
    diffs = sorted(y - x for x in baseline for y in candidate)
    mid = len(diffs) // 2
    return diffs[mid] if len(diffs) % 2 else (diffs[mid - 1] + diffs[mid]) / 2
