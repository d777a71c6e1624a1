"""Markdown sections of relative figures: effects against the baseline, frameworks side by side
(with the parity checks), and data-parallel scaling. Text only, from hlbench.reporting.effects and
hlbench.reporting.scaling, in fixed formats.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting.cells import CORE_AXES, variant_axes
from hlbench.reporting.effects import (
    LOSS_NOISE_NATS,
    MEMORY_NOISE_FRACTION,
    Comparison,
    Effect,
    reference_backend,
)
from hlbench.reporting.markdown import table


def _effect(e: Effect, fmt_value: Any, fmt_bound: Any = None) -> str:
    if e.point is None:
        return f"{fmt.MISSING} ({e.note})" if e.note else fmt.MISSING
    text = fmt_value(e.point) + fmt.interval(e.lo, e.hi, fmt_bound or fmt_value)
    notes = [n for n in (e.note, "within noise" if e.within_noise else "") if n]
    return text + (f" ({', '.join(notes)})" if notes else "")


def _signed_percent(x: float) -> str:
    return fmt.percent(x, signed=True)


def _signed_nats(x: float) -> str:
    return fmt.nats(x, signed=True)


def effects(comparisons: list[Comparison], notes: list[str]) -> list[str]:
    lines = [
        "## Effects against the baseline",
        "",
        "Baseline: the same workload and backend in fp32, 1 accumulation step, no pruning. "
        "Speedup: tokens/s ratio from median step times [95% bootstrap interval]. Memory saving: "
        "1 − peak/baseline peak [range over repeat pairs]. Quality cost: excess eval loss − "
        "baseline's, in nats [range]. "
        '"within noise": the interval includes no change, or the change is below '
        f"{MEMORY_NOISE_FRACTION:.0%} of memory or {LOSS_NOISE_NATS:g} nats.",
        "",
    ]
    if not comparisons:
        lines += ["No cell has an ok baseline to compare with.", ""]
    groups: dict[tuple[str, str, str], list[Comparison]] = {}
    for c in comparisons:
        groups.setdefault((c.workload, c.backend, c.reference_id), []).append(c)
    for (workload, backend, ref), items in groups.items():
        lines += [f"### {workload} · {fmt.backend_name(backend)} (baseline `{ref}`)", ""]
        lines += table(
            [
                [
                    c.cell_id,
                    _effect(c.speedup, fmt.ratio),
                    _effect(c.memory, _signed_percent),
                    _effect(c.quality, _signed_nats),
                ]
                for c in items
            ],
            ["cell", "speedup", "memory saving", "quality cost (nats)"],
        )
    return lines + [f"- {n}" for n in notes] + ([""] if notes else [])


def frameworks(ratios: list[Comparison], cells: pd.DataFrame, parity: pd.DataFrame) -> list[str]:
    """Framework ratios for every cell both backends ran ok, then the parity checks."""
    return ["## Frameworks side by side", "", *_ratio_tables(ratios, cells), *_parity(parity)]


def _ratio_tables(ratios: list[Comparison], cells: pd.DataFrame) -> list[str]:
    lines: list[str] = []
    backends = sorted(set(cells.loc[cells["n_ok"] > 0, "backend"]))
    if ratios:
        ref = fmt.backend_name(reference_backend(backends))
        variants = variant_axes(cells)
        for backend in sorted({c.backend for c in ratios}):
            name = fmt.backend_name(backend)
            lines += [
                f"### {name} / {ref}",
                "",
                f"Ratios {name}/{ref} for every cell both ran ok: tokens/s [95% interval], peak "
                "memory [range] (host RSS where the two report different memory figures), "
                "excess-loss difference.",
                "",
            ]
            rows = [
                [
                    c.workload,
                    *(c.axes[a] for a in [*CORE_AXES, *variants]),
                    _effect(c.speedup, fmt.ratio),
                    _effect(c.memory, fmt.ratio),
                    _effect(c.quality, _signed_nats),
                ]
                for c in ratios
                if c.backend == backend
            ]
            lines += table(
                rows,
                [
                    "workload",
                    *CORE_AXES,
                    *variants,
                    "tokens/s ratio",
                    "memory ratio",
                    "excess loss difference (nats)",
                ],
            )
    else:
        lines += [
            "No cell ran ok in more than one backend (backends with ok cells: "
            f"{', '.join(backends) or 'none'}).",
            "",
        ]
    return lines


def _parity(parity: pd.DataFrame) -> list[str]:
    lines = ["### Parity", ""]
    if parity.empty:
        return lines + ["No parity records.", ""]
    rows = []
    for _, p in parity.iterrows():
        values = p["values"] if isinstance(p["values"], dict) else {}
        shown = ", ".join(
            f"{k} {float(v):.6g}" for k, v in sorted(values.items()) if isinstance(v, (int, float))
        )
        result = (
            fmt.MISSING
            if p["check_passed"] is None
            else ("passed" if p["check_passed"] else "FAILED")
        )
        rows.append(
            [
                p["workload"],
                p["precision"],
                p["backends"],
                p["check"],
                shown,
                f"{p['rel_diff']:.2e}" if not fmt.missing(p["rel_diff"]) else fmt.MISSING,
                f"{p['tolerance']:.0e}" if not fmt.missing(p["tolerance"]) else fmt.MISSING,
                result,
                p["detail"],
            ]
        )
    return lines + table(
        rows,
        [
            "workload",
            "precision",
            "backends",
            "check",
            "values",
            "rel diff",
            "tolerance",
            "result",
            "detail",
        ],
    )


def scaling(cells: pd.DataFrame) -> list[str]:
    """Data-parallel cells against their one-process twins (reports with a `launcher:` run only)."""
    from hlbench.reporting.scaling import HEADERS, scaling_rows

    rows = scaling_rows(cells)
    if not rows:
        return []
    return [
        "## Data parallel",
        "",
        "Each data-parallel cell beside the same cell on one process (same global batch): speedup "
        "in tokens/s, scaling efficiency = speedup / world size, and peak memory relative to one "
        "process (data parallel: the maximum over the ranks). Per-rank figures are in the "
        "records' `distributed` section.",
        "",
        *table(rows, HEADERS),
    ]
