"""Rendering of `hlbench compare`: plain text for terminals, markdown for pull-request comments,
JSON for tools. Only formatting lives here; the numbers come from `hlbench.compare.verdicts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hlbench.compare.comparability import Differences
from hlbench.compare.runs import RunComparison
from hlbench.compare.verdicts import (
    EXIT_INCOMPARABLE,
    EXIT_INCONCLUSIVE,
    EXIT_REGRESSED,
    FAILED,
    IMPROVED,
    INCONCLUSIVE,
    METRICS,
    NOT_AVAILABLE,
    REGRESSED,
    UNCHANGED,
    Thresholds,
)

JSON_SCHEMA = "hlbench-compare/1"
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
                _p(c.p_value),
                f"{c.n_baseline}/{c.n_candidate}",
                c.verdict,
                c.note,
            ]
        )
    return rows


HEADERS = ["cell", "metric", "baseline", "candidate", "change", "p", "n", "verdict", "note"]


def _counts(comparison: RunComparison) -> str:
    verdicts = comparison.verdicts()
    parts = [f"{verdicts.count(v)} {v}" for v in _SEVERITY if verdicts.count(v)]
    return ", ".join(parts) or "no cell compared"


def _settings(report: Report) -> str:
    t = report.thresholds
    return (
        f"metrics {', '.join(report.metrics)}; a change counts when p < {t.alpha:g} (Mann–Whitney "
        f"U) and |change| > {t.threshold:.0%}; at least {t.min_samples} samples per side for a "
        "test; change = candidate median / baseline median − 1"
    )


def render_text(report: Report) -> str:
    from tabulate import tabulate

    lines = [
        f"hlbench compare: {report.verdict} (exit {report.exit_code})",
        f"baseline:  {report.baseline}",
        f"candidate: {report.candidate}",
    ]
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
    lines.append(f"Baseline `{report.baseline}` → candidate `{report.candidate}`.")
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
