"""A runner's own noise: how far apart identical suite runs land, measured from A/A runs.

Repeats inside one suite run are interleaved over the run, so a test over them sees the
process-to-process noise; it cannot see a drift of the machine between the baseline's run and the
candidate's (a neighbour on a shared host, a warmer room, another kernel version of a library).
`hlbench compare --calibrate RUN RUN [RUN ...]` measures that from runs of unchanged code: per cell
and metric,

- each suite run's estimate m = the median of its repeats' estimates (hlbench.comparison.metrics);
- spread = the standard deviation of log m between suite runs (≈ a relative spread);
- largest change = the largest |m_j / m_i − 1| over all pairs of suite runs;
- drift = the part of that spread the repeats do not explain: √max(0, spread² − v), v the variance
  the median of a run's repeats has from their own scatter alone (π/2 · s²/n, s² the variance of
  a run's log estimates, n its repeats; the mean over runs). compare's interval over repeats
  already carries the scatter; counting it again would only blunt the test;
- noise floor = expm1(z · √2 · drift), z the two-sided normal quantile of the calibration's alpha:
  a shift between two suite runs that identical code exceeds less often than alpha (√2: both sides
  of a comparison drift). 0 when the runs differ no more than their repeats predict; a run with a
  single repeat has no scatter to explain anything, so all its spread counts as drift;
- the verdicts compare itself gives each A/A pair without a floor (what would have false-alarmed);
- resolvable change = the smallest change for the worse that compare, with this floor, calls
  `regressed` in ≥ 90% of the A/A pairs once the candidate side is moved by it: the smallest
  slowdown this runner resolves with the suite's repeats.

The result is JSON (`SCHEMA`); `hlbench baseline save --noise FILE` stores it with a baseline, and
compare applies the floors it holds (hlbench.comparison.verdicts).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hlbench.comparison.metrics import METRICS, run_estimates
from hlbench.comparison.runs import by_cell
from hlbench.comparison.verdicts import REGRESSED, Thresholds, compare_samples
from hlbench.errors import UsageError

SCHEMA = "hlbench-noise/1"
FILE_NAME = "noise.json"  # beside a stored baseline's records


@dataclass(frozen=True)
class Floor:
    """The A/A noise of one cell and metric."""

    cell_hash: str
    cell_id: str
    metric: str
    repeats: list[int]  # ok repeats of each suite run
    estimates: list[float]  # each suite run's estimate (median over its repeats)
    spread: float  # sd of the log estimates
    largest_change: float
    noise_floor: float
    drift: float  # sd of log m the repeats' scatter does not explain
    aa_verdicts: dict[str, int]  # compare's verdicts on the A/A pairs, without a floor
    resolvable_change: float | None  # smallest change regressed in ≥ 90% of shifted pairs


@dataclass(frozen=True)
class Calibration:
    run_ids: list[str]
    alpha: float
    threshold: float
    floors: list[Floor]

    def floor(self, cell_hash: str, metric: str) -> float | None:
        for f in self.floors:
            if f.cell_hash == cell_hash and f.metric == metric:
                return f.noise_floor
        return None

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}


def calibrate(
    runs: Sequence[Sequence[dict[str, Any]]],
    metrics: Sequence[str],
    thresholds: Thresholds,
    resolvable: bool = True,
) -> Calibration:
    """The floors of every cell present in at least two of `runs` (current records of one suite run
    each), for every metric with an estimate in at least two of them; `resolvable`: also the
    smallest detectable regression (a search: leave it out where only floors are wanted)."""
    if len(runs) < 2:
        raise UsageError(f"--calibrate needs at least two runs of unchanged code (got {len(runs)})")
    cells = [by_cell(records) for records in runs]
    floors = []
    for cell_hash in dict.fromkeys(h for run in cells for h in run):
        present = [run[cell_hash] for run in cells if cell_hash in run and run[cell_hash].ok]
        for name in metrics:
            per_run = [run_estimates(c.ok, METRICS[name]) for c in present]
            per_run = [e for e in per_run if e and min(e) > 0]
            if len(per_run) >= 2:
                cell_id = present[0].cell_id
                floors.append(_floor(cell_hash, cell_id, name, per_run, thresholds, resolvable))
    ids = sorted({str(r.get("run_id")) for records in runs for r in records})
    return Calibration(ids, thresholds.alpha, thresholds.threshold, floors)


def _floor(
    cell_hash: str,
    cell_id: str,
    name: str,
    per_run: list[list[float]],
    thresholds: Thresholds,
    resolvable: bool,
) -> Floor:
    metric = METRICS[name]
    estimates = [statistics.median(e) for e in per_run]
    spread = statistics.stdev(math.log(m) for m in estimates)
    drift = _drift(per_run, spread)
    floor = math.expm1(
        statistics.NormalDist().inv_cdf(1 - thresholds.alpha / 2) * math.sqrt(2) * drift
    )
    verdicts = Counter(
        compare_samples(a, b, metric.higher_is_better, thresholds, metric.deterministic).verdict
        for a, b in itertools.combinations(per_run, 2)
    )
    return Floor(
        cell_hash,
        cell_id,
        name,
        [len(e) for e in per_run],
        estimates,
        spread,
        max(abs(b / a - 1) for a, b in itertools.permutations(estimates, 2)),
        floor,
        drift,
        dict(verdicts),
        resolvable_change(per_run, metric.higher_is_better, thresholds, floor)
        if resolvable
        else None,
    )


def _drift(per_run: list[list[float]], spread: float) -> float:
    """The sd of the suite runs' log medians beyond what their repeats' own scatter predicts."""
    scattered = [e for e in per_run if len(e) >= 2]
    if len(scattered) < len(per_run):  # a run without repeats explains nothing: all is drift
        return spread
    median_variance = statistics.fmean(
        math.pi / 2 * statistics.variance(math.log(v) for v in e) / len(e) for e in scattered
    )
    return math.sqrt(max(0.0, spread**2 - median_variance))


def resolvable_change(
    per_run: list[list[float]],
    higher_is_better: bool,
    thresholds: Thresholds,
    floor: float,
    power: float = 0.9,
) -> float | None:
    """The smallest change for the worse (0.5% steps, up to 100%) that compare, with this floor,
    calls `regressed` in at least `power` of the ordered pairs of these runs once the candidate's
    estimates are moved by it: what this runner can resolve with these repeats. None: not even
    100% (too few repeats for a test, or noise beyond that)."""
    pairs = list(itertools.permutations(per_run, 2))
    start = math.ceil(max(thresholds.threshold, floor) * 200 + 1e-9)
    for step in range(start, 201):
        change = step / 200
        factor = 1 / (1 + change) if higher_is_better else 1 + change
        hits = sum(
            compare_samples(
                a, [v * factor for v in b], higher_is_better, thresholds, False, floor
            ).verdict
            == REGRESSED
            for a, b in pairs
        )
        if hits >= power * len(pairs):
            return change
    return None


def load(path: Path) -> Calibration:
    """A calibration written by `compare --calibrate -o`; a UsageError naming what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise UsageError(f"{path}: not a readable noise file ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f'{path}: not an hlbench noise file (expected "schema": "{SCHEMA}")')
    try:
        floors = [Floor(**f) for f in data["floors"]]
        for f in floors:
            if not (isinstance(f.noise_floor, (int, float)) and 0 <= f.noise_floor < math.inf):
                raise TypeError
        return Calibration(
            list(data["run_ids"]), float(data["alpha"]), float(data["threshold"]), floors
        )
    except (KeyError, TypeError, ValueError):
        why = "a field is missing or of the wrong type"
        raise UsageError(f"{path}: damaged noise file ({why})") from None
