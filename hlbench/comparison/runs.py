"""Runs compared cell by cell: current records grouped by cell (matched by content hash), one
estimate per ok repeat (worker process) and metric (hlbench.comparison.metrics), and a verdict per
cell and metric over those estimates (hlbench.comparison.verdicts). Records are read through
hlbench.records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hlbench.comparison.metrics import DEFAULT_METRIC, METRICS, Metric, run_estimates
from hlbench.comparison.verdicts import (
    DEFAULT_THRESHOLDS,
    FAILED,
    NOT_AVAILABLE,
    Comparison,
    Thresholds,
    compare_samples,
)
from hlbench.records import identity

# A runner's noise floor per (cell hash, metric), from A/A runs (hlbench.comparison.noise).
Floors = Mapping[tuple[str, str], float]


@dataclass(frozen=True)
class CellRecords:
    cell_hash: str
    cell_id: str
    ok: list[dict[str, Any]]  # statistics come from these only
    failed: list[dict[str, Any]]  # oom / timeout / error / crashed
    skipped: list[dict[str, Any]]


def by_cell(records: Iterable[dict[str, Any]]) -> dict[str, CellRecords]:
    """Current cell records grouped by cell hash, in the order of their first current record."""
    groups: dict[str, dict[str, Any]] = {}
    for record in identity.current_records(records):
        g = groups.setdefault(
            str(identity.cell_hash(record)),
            {"id": identity.cell_id(record) or "?", "ok": [], "failed": [], "skipped": []},
        )
        if identity.is_ok(record):
            g["ok"].append(record)
        else:
            g["skipped" if identity.is_skipped(record) else "failed"].append(record)
    return {
        h: CellRecords(h, g["id"], g["ok"], g["failed"], g["skipped"]) for h, g in groups.items()
    }


@dataclass(frozen=True)
class CellResult:
    cell_hash: str
    cell_id: str
    metric: str
    comparison: Comparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell_hash": self.cell_hash,
            "cell_id": self.cell_id,
            "metric": self.metric,
            **self.comparison.to_dict(),
        }


@dataclass(frozen=True)
class RunComparison:
    results: list[CellResult]  # one per common cell and metric
    only_baseline: list[tuple[str, str]]  # (cell_id, cell_hash)
    only_candidate: list[tuple[str, str]]
    not_run: list[
        tuple[str, str, str]
    ]  # (cell_id, cell_hash, why): skipped or failed on both sides

    def verdicts(self) -> list[str]:
        return [r.comparison.verdict for r in self.results]


def statuses(cell: CellRecords) -> str:
    """The distinct statuses of a cell's records that did not run ok: "oom", "error/timeout"."""
    return "/".join(sorted({identity.status(r) or "?" for r in cell.failed + cell.skipped}))


def _status_summary(cell: CellRecords) -> str:
    reasons = [identity.reason(r) for r in cell.failed + cell.skipped if identity.reason(r)]
    return statuses(cell) + (f": {reasons[0]}" if reasons else "")


def compare_runs(
    baseline: Iterable[dict[str, Any]],
    candidate: Iterable[dict[str, Any]],
    metrics: Sequence[str] = (DEFAULT_METRIC,),
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    floors: Floors | None = None,
) -> RunComparison:
    """Every cell present on both sides (by content hash) × every metric."""
    base, cand = by_cell(baseline), by_cell(candidate)
    results: list[CellResult] = []
    not_run: list[tuple[str, str, str]] = []
    for h, b in base.items():
        if h not in cand:
            continue
        c = cand[h]
        if not b.ok and not c.ok:  # nothing to compare: skipped (or failed) on both sides
            why = f"baseline {_status_summary(b)}; candidate {_status_summary(c)}"
            not_run.append((b.cell_id, h, why))
            continue
        for name in metrics:
            floor = (floors or {}).get((h, name))
            comparison = compare_cell(b, c, METRICS[name], thresholds, floor)
            results.append(CellResult(h, b.cell_id, name, comparison))
    only_b = [(g.cell_id, h) for h, g in base.items() if h not in cand]
    only_c = [(g.cell_id, h) for h, g in cand.items() if h not in base]
    return RunComparison(results, only_b, only_c, not_run)


def compare_cell(
    b: CellRecords,
    c: CellRecords,
    metric: Metric,
    thresholds: Thresholds,
    noise_floor: float | None = None,
) -> Comparison:
    """One metric of one cell: statistics when both sides ran ok, else what kept a side from it."""
    if b.ok and c.ok:
        return compare_samples(
            run_estimates(b.ok, metric),
            run_estimates(c.ok, metric),
            metric.higher_is_better,
            thresholds,
            metric.deterministic,
            noise_floor,
        )
    empty = dict(median_baseline=None, median_candidate=None, change=None, p_value=None)
    if b.ok:  # ok in the baseline, failed in the candidate: regressed; skipped: no verdict
        verdict = FAILED if c.failed else NOT_AVAILABLE
        n_baseline = len(run_estimates(b.ok, metric)) if c.failed else 0
        return Comparison(verdict, n_baseline, 0, note=f"candidate {_status_summary(c)}", **empty)
    n_candidate = len(run_estimates(c.ok, metric))
    return Comparison(NOT_AVAILABLE, 0, n_candidate, note=f"baseline {_status_summary(b)}", **empty)
