"""Rendering of `hlbench compare`: plain text for terminals, markdown for pull-request comments,
JSON for tools. Only formatting lives here; the numbers come from `hlbench.comparison.verdicts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hlbench.comparison.comparability import Differences
from hlbench.comparison.metrics import METRICS
from hlbench.comparison.noise import Calibration
from hlbench.comparison.runs import RunComparison
from hlbench.comparison.verdicts import (
    EXIT_INCOMPARABLE,
    EXIT_INCONCLUSIVE,
    EXIT_REGRESSED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    NOT_AVAILABLE,
    REGRESSED,
    UNCHANGED,
    Thresholds,
)

# /2: the run, not the step, is the unit (n counts runs); results carry a CI and the noise floor.
JSON_SCHEMA = "hlbench-compare/2"
# Rows are listed worst first, so a long table still opens with what matters.
_SEVERITY = {FAILED: 0, REGRESSED: 1, INCONCLUSIVE: 2, IMPROVED: 3, UNCHANGED: 4, NOT_AVAILABLE: 5}
# A marker that lets a CI job find and update its previous comment instead of adding another.
MD_MARKER = "<!-- hlbench-compare -->"


@dataclass(frozen=True)
class Report:
    baseline: str  # paths as given
    candidate: str
    metrics: list[str]
    thresholds: Thresholds
    differences: Differences
    forced: bool
    # None: refused (incomparable, no --force) or nothing in common
    comparison: RunComparison | None
    exit_code: int
    message: str = ""  # why nothing was compared, when comparison is None
    run_ids: tuple[list[str], list[str]] = ([], [])  # the runs used on each side
    noise: str | None = None  # where the noise floors came from; None: no calibration
    notes: list[str] = field(default_factory=list)  # which run an input's several were reduced to

    @property
    def verdict(self) -> str:
        """One word for the whole comparison."""
        if self.exit_code == EXIT_INCOMPARABLE:
            return "incomparable"
        if self.exit_code == EXIT_REGRESSED:
            return REGRESSED
        if self.exit_code == EXIT_INCONCLUSIVE:
            return INCONCLUSIVE
        verdicts = self.comparison.verdicts() if self.comparison else []
        return IMPROVED if IMPROVED in verdicts else UNCHANGED


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "B":
        return f"{value / 2**20:,.1f} MiB"
    if unit == "s":
        return f"{value * 1e3:,.2f} ms"
    if unit == "tokens/s":
        return f"{value:,.0f}"
    if unit == "nats":
        return f"{value:.4f}"
    return f"{value:.4g}"


def _change(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.2g}"


def _ci(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def _rows(comparison: RunComparison) -> list[list[str]]:
    ordered = sorted(
        enumerate(comparison.results), key=lambda ir: (_SEVERITY[ir[1].comparison.verdict], ir[0])
    )
    rows = []
    for _, r in ordered:
        c, unit = r.comparison, METRICS[r.metric].unit
        rows.append(
            [
                r.cell_id,
                METRICS[r.metric].label,
                format_value(c.median_baseline, unit),
                format_value(c.median_candidate, unit),
                _change(c.change),
                _ci(c.ci_low, c.ci_high),
                _p(c.p_value),
                f"{c.n_baseline}/{c.n_candidate}",
                c.verdict,
                c.note,
            ]
        )
    return rows


HEADERS = [
    "cell",
    "metric",
    "baseline",
    "candidate",
    "change",
    "CI",
    "p",
    "runs",
    "verdict",
    "note",
]


def _counts(comparison: RunComparison) -> str:
    verdicts = comparison.verdicts()
    parts = [f"{verdicts.count(v)} {v}" for v in _SEVERITY if verdicts.count(v)]
    return ", ".join(parts) or "no cell compared"


def _settings(report: Report) -> str:
    t = report.thresholds
    floor = (
        f"noise floors from {report.noise}"
        if report.noise
        else ("no noise floor (measure one: hlbench compare --calibrate RUN RUN ...)")
    )
    return (
        f"metrics {', '.join(report.metrics)}; runs = worker processes per side, the independent "
        f"samples (at least {t.runs_needed()} per side for a test at alpha {t.alpha:g}); a change "
        f"counts when the {1 - t.alpha:.0%} CI over runs excludes no change and |change| > "
        f"{t.threshold:.0%} and the noise floor; change = candidate median / baseline median − 1; "
        + floor
    )


def render_text(report: Report) -> str:
    from tabulate import tabulate

    lines = [
        f"hlbench compare: {report.verdict} (exit {report.exit_code})",
        f"baseline:  {report.baseline}{_runs(report.run_ids[0])}",
        f"candidate: {report.candidate}{_runs(report.run_ids[1])}",
    ]
    lines += [f"note: {n}" for n in report.notes]
    lines += _difference_lines(report, prefix="")
    if report.message:
        lines += ["", report.message]
    if report.comparison is not None:
        cmp = report.comparison
        if cmp.results:
            lines += [
                "",
                tabulate(_rows(cmp), headers=HEADERS, disable_numparse=True),
                "",
                _counts(cmp),
            ]
        lines += _presence_lines(cmp, prefix="")
    lines += ["", _settings(report)]
    return "\n".join(lines) + "\n"


def _runs(run_ids: list[str]) -> str:
    if not run_ids:
        return ""
    return f"  (run {run_ids[0]})" if len(run_ids) == 1 else f"  ({len(run_ids)} runs pooled)"


def _difference_lines(report: Report, prefix: str) -> list[str]:
    d = report.differences
    lines: list[str] = []
    if d.fatal:
        head = (
            "WARNING: compared anyway (--force), although the runs differ in:"
            if report.forced
            else "not comparable: the runs differ in (use --force to compare anyway):"
        )
        lines += ["", head] + [f"{prefix}- {f}" for f in d.fatal]
    if d.warnings:
        lines += ["", "could not check:"] + [f"{prefix}- {w}" for w in d.warnings]
    return lines


def _presence_lines(cmp: RunComparison, prefix: str) -> list[str]:
    lines: list[str] = []
    for title, cells in (
        ("only in the baseline (not compared):", cmp.only_baseline),
        ("only in the candidate (not compared):", cmp.only_candidate),
    ):
        if cells:
            lines += ["", title] + [f"{prefix}- {cell_id} ({h})" for cell_id, h in cells]
    if cmp.not_run:
        lines += ["", "ran on neither side:"] + [
            f"{prefix}- {cell_id} ({h}): {why}" for cell_id, h, why in cmp.not_run
        ]
    return lines


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    """For a pull-request comment or a job summary: headline first, table, then the fine print."""
    lines = [MD_MARKER, f"### hlbench compare: **{report.verdict}** (exit {report.exit_code})", ""]
    sides = zip((report.baseline, report.candidate), report.run_ids)
    base, cand = (f"`{path}` {_runs(ids).strip()}".rstrip() for path, ids in sides)
    lines.append(f"Baseline {base} → candidate {cand}.")
    lines += ["", *[f"Note: {_md_escape(n)}" for n in report.notes]] if report.notes else []
    lines += _difference_lines(report, prefix="")
    if report.message:
        lines += ["", report.message]
    if report.comparison is not None:
        cmp = report.comparison
        if cmp.results:
            lines += [
                "",
                _counts(cmp) + ".",
                "",
                "| " + " | ".join(HEADERS) + " |",
                "|" + "---|" * len(HEADERS),
            ]
            lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in _rows(cmp)]
        lines += _presence_lines(cmp, prefix="")
    lines += ["", f"<sub>{_settings(report)}</sub>"]
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> dict[str, Any]:
    cmp = report.comparison
    t = report.thresholds
    return {
        "schema": JSON_SCHEMA,
        "verdict": report.verdict,
        "exit_code": report.exit_code,
        "baseline": report.baseline,
        "candidate": report.candidate,
        "metrics": report.metrics,
        "alpha": t.alpha,
        "threshold": t.threshold,
        "min_samples": t.min_samples,
        "runs_needed": t.runs_needed(),
        "baseline_run_ids": report.run_ids[0],
        "candidate_run_ids": report.run_ids[1],
        "noise": report.noise,
        "notes": report.notes,
        "comparable": not report.differences.fatal,
        "forced": report.forced,
        "differences": report.differences.fatal,
        "warnings": report.differences.warnings,
        "message": report.message or None,
        "results": [r.to_dict() for r in cmp.results] if cmp else [],
        "only_baseline": [{"cell_id": i, "cell_hash": h} for i, h in cmp.only_baseline]
        if cmp
        else [],
        "only_candidate": [{"cell_id": i, "cell_hash": h} for i, h in cmp.only_candidate]
        if cmp
        else [],
        "not_run": [{"cell_id": i, "cell_hash": h, "why": w} for i, h, w in cmp.not_run]
        if cmp
        else [],
    }


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, allow_nan=False) + "\n"


RENDERERS = {"text": render_text, "md": render_markdown, "json": render_json}


def render_noise(calibration: Calibration, fmt: str) -> str:
    """`compare --calibrate`: per cell and metric, how far identical runs land apart."""
    if fmt == "json":
        return json.dumps(calibration.to_json(), indent=2, allow_nan=False) + "\n"
    from tabulate import tabulate

    rows = []
    for f in calibration.floors:
        unit = METRICS[f.metric].unit
        estimates = ", ".join(format_value(e, unit) for e in f.estimates)
        false_alarms = f.aa_verdicts.get(REGRESSED, 0) + f.aa_verdicts.get(IMPROVED, 0)
        pairs = sum(f.aa_verdicts.values())
        rows.append(
            [
                f.cell_id,
                METRICS[f.metric].label,
                "/".join(map(str, f.repeats)),
                estimates,
                f"{f.spread:.1%}",
                f"{f.drift:.1%}",
                f"{f.largest_change:.1%}",
                f"±{f.noise_floor:.1%}",
                f"{false_alarms}/{pairs}",
                "not within 100%" if f.resolvable_change is None else f"{f.resolvable_change:.1%}",
            ]
        )
    headers = [
        "cell",
        "metric",
        "repeats",
        "per-run estimates",
        "spread",
        "drift",
        "largest A/A change",
        "noise floor",
        "A/A false alarms",
        "smallest detectable regression",
    ]
    fmt_name = "github" if fmt == "md" else "simple"
    table = tabulate(rows, headers=headers, disable_numparse=True, tablefmt=fmt_name)
    n = len(calibration.run_ids)
    return (
        f"hlbench compare --calibrate: {n} A/A runs ({', '.join(calibration.run_ids)})\n\n"
        f"{table}\n\nspread: standard deviation of the runs' log estimates (each the median of its "
        "repeats); drift: the part of it the repeats' own scatter does not explain; noise floor: "
        "the change between two runs that drift alone exceeds with probability "
        f"{calibration.alpha:g} (0: the runs differ no more than their repeats predict); A/A false "
        "alarms: pairs of these runs that compare, without a floor, called regressed or improved; "
        "smallest detectable regression: the change for the worse that compare, with the floor, "
        "calls regressed in 90% of these pairs once added to one side. Store it: hlbench "
        "baseline save RECORDS --noise FILE (write FILE with -o FILE.json).\n"
    )
