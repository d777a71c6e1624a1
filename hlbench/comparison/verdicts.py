"""The verdict for one cell and one metric, from one estimate per run on each side.

Pure functions on lists of numbers: no files, no framework, so every rule below is unit-tested on
synthetic samples. The estimates come from hlbench.comparison.metrics (one per worker process:
the run is the unit, never a step); runs are matched cell by cell in hlbench.comparison.runs.

The rule. With x = the baseline's run estimates and y = the candidate's (all positive):

- change = median(y) / median(x) − 1, the figure shown;
- p = two-sided exact Mann–Whitney U over the runs, and CI = the matching (1 − alpha) interval of
  the ratio y / x (Hodges–Lehmann on log values; hlbench.comparison.stats). n vs m runs that cannot
  reach alpha at all (fewer than 5 per side at alpha 0.01) give no test: `inconclusive`;
- the noise floor f: the change between suite runs that identical code shows on this runner (from
  A/A runs, stored with the baseline; hlbench.comparison.noise). Repeats inside one suite run do not
  see a drift of the machine between the baseline's run and the candidate's; the floor does;
- `regressed` / `improved`: the CI excludes no change **and** |change| > threshold **and**
  |change| > f, in the metric's bad / good direction (tokens/s: bigger is better; step time,
  memory, energy, excess loss: smaller is better);
- `unchanged`: the CI, even shifted by ±f, lies within ±threshold (no change of the threshold's
  size is plausible);
- `inconclusive`: anything else, with the reason: too few runs, a CI too wide to rule out a change
  of the threshold's size, or a change "below this runner's noise floor".

Deterministic per-run figures (peak memory, excess loss of a fixed seed; see metrics) below the
runs a test needs are judged on the threshold alone, marked in the note, unless the repeats of a
side already spread wider than the threshold (`inconclusive`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hlbench.comparison import stats

# Verdicts, in the order a summary lists them.
REGRESSED, IMPROVED, INCONCLUSIVE, UNCHANGED = "regressed", "improved", "inconclusive", "unchanged"
# The cell failed (oom/timeout/error/crashed) in the candidate but ran in the baseline: a
# regression.
FAILED = "failed"
# The metric is absent on one side (e.g. energy without NVML): listed, never decisive.
NOT_AVAILABLE = "not available"

DEFAULT_ALPHA = 0.01
DEFAULT_THRESHOLD = 0.05
# Runs per side below which no test is made even where alpha would allow one (a test over two runs
# at a loose alpha says little); alpha itself usually asks for more (5 per side at 0.01).
DEFAULT_MIN_SAMPLES = 3


@dataclass(frozen=True)
class Thresholds:
    alpha: float = DEFAULT_ALPHA  # significance level of the two-sided test
    threshold: float = DEFAULT_THRESHOLD  # smallest relative change that counts (0.05 = 5%)
    min_samples: int = DEFAULT_MIN_SAMPLES  # runs per side, at least, for a test

    def runs_needed(self) -> int:
        """Runs per side (equal sides) that can give a verdict on a timing metric."""
        return max(self.min_samples, stats.fewest_runs(self.alpha))


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Comparison:
    """The outcome for one cell and one metric."""

    verdict: str
    n_baseline: int  # runs (worker processes) on each side: the independent samples
    n_candidate: int
    median_baseline: float | None  # median of the runs' estimates
    median_candidate: float | None
    change: float | None  # relative: candidate / baseline − 1
    p_value: float | None  # two-sided exact Mann–Whitney U over runs; None when no test was made
    note: str  # why, in a few words
    ci_low: float | None = None  # (1 − alpha) interval of the relative change, before the floor
    ci_high: float | None = None
    noise_floor: float | None = None  # the runner's A/A floor applied (relative), None: none known

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_spread(samples: Sequence[float]) -> float:
    """(max − min) / |median|: how far the repeats of one side already disagree."""
    median = statistics.median(samples)
    return (max(samples) - min(samples)) / abs(median) if median else math.inf


def compare_samples(
    baseline: Sequence[float] | None,
    candidate: Sequence[float] | None,
    higher_is_better: bool,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    deterministic: bool = False,
    noise_floor: float | None = None,
) -> Comparison:
    """The verdict for one metric of one cell from per-run estimates (see the module docstring)."""
    base, cand = list(baseline or []), list(candidate or [])
    sides = (len(base), len(cand), _median(base), _median(cand))
    if not base or not cand:
        where = "in the candidate" if base else "in the baseline" if cand else "on either side"
        return Comparison(NOT_AVAILABLE, *sides, None, None, f"not recorded {where}")
    if min(base) <= 0 or min(cand) <= 0:  # a ratio needs positive values (excess loss can be ≤ 0)
        note = "no relative change: a value is not positive"
        return Comparison(INCONCLUSIVE, *sides, None, None, note)
    change = sides[3] / sides[2] - 1.0
    n_b, n_c = len(base), len(cand)
    if min(n_b, n_c) >= thresholds.min_samples and stats.can_reach(n_b, n_c, thresholds.alpha):
        tested = _tested(base, cand, change, higher_is_better, thresholds, noise_floor)
        verdict, note, p, ci = tested
        return Comparison(verdict, *sides, change, p, note, *ci, noise_floor)
    if deterministic:
        verdict, note = _threshold_only(base, cand, change, higher_is_better, thresholds)
        return Comparison(verdict, *sides, change, None, note)
    note = (
        f"too few runs for a test at alpha {thresholds.alpha:g} ({n_b} vs {n_c}; "
        f"need {thresholds.runs_needed()} per side)"
    )
    return Comparison(INCONCLUSIVE, *sides, change, None, note)


def _threshold_only(
    base: list[float], cand: list[float], change: float, higher_is_better: bool, t: Thresholds
) -> tuple[str, str]:
    """A deterministic figure with too few runs for a test: the threshold decides, unless the
    repeats already disagree."""
    spread = max(relative_spread(base), relative_spread(cand))
    if spread > t.threshold:
        return INCONCLUSIVE, f"repeats spread {spread:.1%} > threshold; too few for a test"
    verdict = _direction(change, higher_is_better) if abs(change) > t.threshold else UNCHANGED
    return verdict, f"threshold only ({len(base)} vs {len(cand)} runs, no test)"


def _tested(
    base: list[float],
    cand: list[float],
    change: float,
    higher_is_better: bool,
    t: Thresholds,
    noise_floor: float | None,
) -> tuple[str, str, float, tuple[float, float]]:
    """A test over runs: the CI of the ratio against no change, the threshold and the noise
    floor. (verdict, note, p, (CI low, CI high) as relative changes)."""
    log_b, log_c = [math.log(v) for v in base], [math.log(v) for v in cand]
    p = stats.p_value(log_b, log_c)
    lo, hi = stats.interval(log_b, log_c, t.alpha) or (-math.inf, math.inf)
    ci = (math.expm1(lo), math.expm1(hi))
    floor, threshold = noise_floor or 0.0, f"{t.threshold:.0%}"
    shown = f"CI [{ci[0]:+.1%}, {ci[1]:+.1%}]"
    limit, drift = math.log1p(t.threshold), math.log1p(floor)
    significant, large = lo > 0 or hi < 0, abs(change) > t.threshold
    if significant and large and abs(change) > floor:
        note = f"{shown} excludes no change, |change| > {threshold}"
        note += f" and the noise floor {floor:.1%}" if noise_floor else ""
        return _direction(change, higher_is_better), note, p, ci
    if lo - drift > -limit and hi + drift < limit:  # even shifted by the floor: within threshold
        note = shown + (f" ± noise floor {floor:.1%}" if noise_floor else "")
        return UNCHANGED, f"{note} within ±{threshold}", p, ci
    if significant and large:
        note = f"{change:+.1%} is below this runner's noise floor ({floor:.1%})"
    elif large:
        note = f"|change| > {threshold} but {shown} includes no change"
    elif floor >= t.threshold:
        note = f"this runner's noise floor ({floor:.1%}) is above the {threshold} threshold"
    else:
        note = f"{shown} reaches past ±{threshold}: too noisy to tell"
    return INCONCLUSIVE, note, p, ci


def _direction(change: float, higher_is_better: bool) -> str:
    return REGRESSED if (change < 0) == higher_is_better else IMPROVED


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
