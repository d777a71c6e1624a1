"""A/B statistics for `hlbench compare`: the metrics, a test, a verdict per cell and metric.

Pure functions on lists of numbers and record dicts: no files, no framework, so every rule below is
unit-tested on synthetic samples. A metric's samples are drawn from a record through
hlbench.records (the fields every reader shares); runs are matched cell by cell in
hlbench.compare.runs.

The rule (asv / pyperf style): a change counts only when it is both **significant** and **large**.

- change = median(candidate) / median(baseline) − 1 (relative change of medians; robust to the
  stray slow step that a GC pause or a clock ramp adds);
- p = two-sided Mann–Whitney U on the raw samples (rank-based: no normality assumed);
- `regressed` / `improved`: p < alpha **and** |change| > threshold, in the metric's bad / good
  direction (tokens/s: bigger is better; step time, memory, energy, excess loss: smaller is better);
- `inconclusive`: either side has fewer than `min_samples` samples, or |change| > threshold but
  p ≥ alpha (the spread is too wide to tell a real change from noise);
- `unchanged`: otherwise (a change within the threshold, even a significant one, is not reported as
  a change: a 1% difference that noise-free timers can "prove" is not what CI should fail on).

Per-step metrics (tokens/s, step time) have one sample per measured optimizer step, pooled over
windows and repeats. Per-run metrics (peak memory, excess loss, energy/token) have one sample per
repeat, so a test is usually impossible (1 vs 1). For them, below `min_samples` the verdict is
**threshold-only**, marked in its note: these values are (near-)deterministic for a fixed cell (the
allocator's peak is exact; the fp32 loss is reproducible), so a change past the threshold is taken
as real — unless the repeats of either side already spread wider than the threshold, which makes it
`inconclusive`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hlbench.records import fields, memory

# Verdicts, in the order a summary lists them.
REGRESSED, IMPROVED, INCONCLUSIVE, UNCHANGED = "regressed", "improved", "inconclusive", "unchanged"
# The cell failed (oom/timeout/error/crashed) in the candidate but ran in the baseline: a
# regression.
FAILED = "failed"
# The metric is absent on one side (e.g. energy without NVML): listed, never decisive.
NOT_AVAILABLE = "not available"

DEFAULT_ALPHA = 0.01
DEFAULT_THRESHOLD = 0.05
# Fewer samples than this on either side: no test. With 10 vs 10 the smallest two-sided Mann–Whitney
# p is about 1e-5, so alpha = 0.01 is reachable with room; with 5 vs 5 it is 0.008, barely.
DEFAULT_MIN_SAMPLES = 10


@dataclass(frozen=True)
class Metric:
    """One comparable quantity and how to draw its samples from an `ok` record."""

    name: str  # the --metric value and JSON key
    label: str  # column header
    unit: str
    higher_is_better: bool
    per_step: bool  # one sample per measured step (True) or one per repeat (False)
    samples: Callable[[dict[str, Any]], list[float] | None]  # None: not in this record


def _samples(value: float | None) -> list[float] | None:
    """One sample per repeat: a per-run figure, None when the record lacks it."""
    return None if value is None or math.isnan(value) else [value]


def _step_times_s(record: dict[str, Any]) -> list[float] | None:
    return fields.step_times_s(record) or None


def _peak_memory_bytes(record: dict[str, Any]) -> list[float] | None:
    """The framework allocator's peak (host RSS and NVML's figures measure other things)."""
    return _samples(memory.allocator_peak_bytes(record))


def _host_peak_rss_bytes(record: dict[str, Any]) -> list[float] | None:
    return _samples(memory.host_peak_rss_bytes(record))


def _energy_j_per_token(record: dict[str, Any]) -> list[float] | None:
    """Energy per token over the measured windows, from the telemetry writer's derived figures
    (NVML's GPU energy, else RAPL's CPU package): "not available" without an energy counter."""
    return _samples(fields.energy_per_token_j(record))


def _excess_eval_loss_nats(record: dict[str, Any]) -> list[float] | None:
    return _samples(fields.excess_eval_loss_nats(record))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("tokens_per_s", "tokens/s", "tokens/s", True, True, fields.step_tokens_per_s),
        Metric("step_time_s", "step time", "s", False, True, _step_times_s),
        Metric("peak_memory_bytes", "peak memory", "B", False, False, _peak_memory_bytes),
        Metric("host_peak_rss_bytes", "host peak RSS", "B", False, False, _host_peak_rss_bytes),
        Metric("energy_j_per_token", "energy/token", "J/token", False, False, _energy_j_per_token),
        Metric(
            "excess_eval_loss_nats",
            "excess eval loss",
            "nats",
            False,
            False,
            _excess_eval_loss_nats,
        ),
    )
}
DEFAULT_METRIC = "tokens_per_s"


@dataclass(frozen=True)
class Thresholds:
    alpha: float = DEFAULT_ALPHA  # significance level of the two-sided test
    threshold: float = DEFAULT_THRESHOLD  # smallest relative change that counts (0.05 = 5%)
    min_samples: int = DEFAULT_MIN_SAMPLES  # per side, for a test


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Comparison:
    """The outcome for one cell and one metric."""

    verdict: str
    n_baseline: int
    n_candidate: int
    median_baseline: float | None
    median_candidate: float | None
    change: float | None  # relative: candidate / baseline − 1
    p_value: float | None  # two-sided Mann–Whitney U; None when no test was made
    note: str  # why, in a few words

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mann_whitney_p(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p-value; 1.0 when every sample is equal (no evidence of change)."""
    from scipy.stats import mannwhitneyu  # imported here: `hlbench --help` stays fast

    if len(set(baseline) | set(candidate)) == 1:
        return 1.0  # all ties: scipy would return nan
    p = float(mannwhitneyu(candidate, baseline, alternative="two-sided").pvalue)
    return 1.0 if math.isnan(p) else p


def relative_spread(samples: Sequence[float]) -> float:
    """(max − min) / |median|: how far the repeats of one side already disagree."""
    median = statistics.median(samples)
    return (max(samples) - min(samples)) / abs(median) if median else math.inf


def compare_samples(
    baseline: Sequence[float] | None,
    candidate: Sequence[float] | None,
    higher_is_better: bool,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    per_step: bool = True,
) -> Comparison:
    """The verdict for one metric of one cell (see the module docstring for the rule)."""
    base, cand = list(baseline or []), list(candidate or [])
    if not base or not cand:
        where = "in the candidate" if base else "in the baseline" if cand else "on either side"
        return Comparison(
            NOT_AVAILABLE,
            len(base),
            len(cand),
            _median(base),
            _median(cand),
            None,
            None,
            f"not recorded {where}",
        )
    med_b, med_c = statistics.median(base), statistics.median(cand)

    def outcome(verdict: str, change: float | None, p: float | None, note: str) -> Comparison:
        return Comparison(verdict, len(base), len(cand), med_b, med_c, change, p, note)

    # a relative change needs a positive reference (excess loss can be ≤ 0)
    if med_b <= 0 or med_c < 0:
        return outcome(
            INCONCLUSIVE, None, None, "no relative change: the baseline median is not positive"
        )
    change = med_c / med_b - 1.0
    n_b, n_c, need = len(base), len(cand), thresholds.min_samples
    if n_b >= need and n_c >= need:
        p = mann_whitney_p(base, cand)
        verdict, note = _tested(change, p, higher_is_better, thresholds)
        return outcome(verdict, change, p, note)
    if per_step:
        return outcome(
            INCONCLUSIVE, change, None, f"too few samples ({n_b} vs {n_c}; need {need} per side)"
        )
    # a per-run metric: threshold-only, unless the repeats already disagree
    spread = max(relative_spread(base), relative_spread(cand))
    if spread > thresholds.threshold:
        return outcome(
            INCONCLUSIVE,
            change,
            None,
            f"repeats spread {spread:.1%} > threshold; too few for a test",
        )
    large = abs(change) > thresholds.threshold
    verdict = _direction(change, higher_is_better) if large else UNCHANGED
    return outcome(verdict, change, None, f"threshold only ({n_b} vs {n_c} runs, no test)")


def _direction(change: float, higher_is_better: bool) -> str:
    return REGRESSED if (change < 0) == higher_is_better else IMPROVED


def _tested(
    change: float, p: float, higher_is_better: bool, thresholds: Thresholds
) -> tuple[str, str]:
    """Verdict and note from a test: a change counts only when significant and large."""
    large, significant = abs(change) > thresholds.threshold, p < thresholds.alpha
    alpha, threshold = f"{thresholds.alpha:g}", f"{thresholds.threshold:.0%}"
    if large and significant:
        return _direction(change, higher_is_better), f"p < {alpha} and |change| > {threshold}"
    if large:
        return INCONCLUSIVE, f"|change| > {threshold} but p ≥ {alpha}: spread too wide"
    if significant:
        return UNCHANGED, f"significant but within {threshold}"
    return UNCHANGED, "within threshold, not significant"


def _median(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None


# Exit codes of `hlbench compare`; when several apply, the first in this order wins: 2 > 1 > 3 > 0.
EXIT_OK, EXIT_REGRESSED, EXIT_INCOMPARABLE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def exit_code(verdicts: Iterable[str]) -> int:
    """1 if anything regressed or failed; else 3 if anything was inconclusive; else 0."""
    found = set(verdicts)
    if found & {REGRESSED, FAILED}:
        return EXIT_REGRESSED
    if INCONCLUSIVE in found:
        return EXIT_INCONCLUSIVE
    return EXIT_OK
