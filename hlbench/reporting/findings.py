"""Findings: short sentences computed from the numbers, never written by hand.

Each rule looks at the effects and states what they show, including "no speedup" and "within noise":
a report must say plainly when a technique does not pay off on this machine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting.cells import stability_warnings
from hlbench.reporting.effects import Comparison, Effect, reference_backend
from hlbench.reporting.frontier import TIME_TO_TARGET, Frontier
from hlbench.reporting.scaling import scaling_findings

# A speedup under this is "no speedup" even when statistically resolved: nobody prunes for 3%.
MEANINGFUL_SPEEDUP = 1.05


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _where(cells: pd.DataFrame, backend: str) -> str:
    rows = cells[(cells["backend"] == backend) & (cells["n_ok"] > 0)]
    devices = sorted({str(d) for d in rows["device"].dropna()})
    names = sorted({str(n) for n in rows["device_name"].dropna()})
    if devices == ["cpu"]:
        return "on this CPU" + (f" ({', '.join(names)})" if names else "")
    return f"on {', '.join(names) or ', '.join(devices) or 'this machine'}"


def _per_workload(items: list[tuple[str, Effect]], fmt_value: Any) -> str:
    return ", ".join(
        f"{w} {fmt_value(e.point)}" + (" within noise" if e.within_noise else "") for w, e in items
    )


def _speed_phrase(effects: list[Effect]) -> str:
    points = [e.point for e in effects if e.point is not None and e.point > 0]
    if not points:
        return "no timing"
    mean = _geomean(points)
    if all(e.within_noise for e in effects):
        return f"{fmt.ratio(mean)} (within noise: no measurable difference)"
    return fmt.ratio(mean)


def precision_findings(effects: list[Comparison], cells: pd.DataFrame) -> list[str]:
    groups: dict[tuple[str, str], list[tuple[str, Comparison]]] = defaultdict(list)
    for c in effects:
        if (
            c.axes["accumulation"] == 1
            and c.axes["pruning"] == "none"
            and c.axes["precision"] != "fp32"
        ):
            groups[(c.backend, c.axes["precision"])].append((c.workload, c))
    out = []
    for (backend, precision), items in sorted(groups.items()):
        speed = _speed_phrase([c.speedup for _, c in items])
        detail = _per_workload([(w, c.speedup) for w, c in items], fmt.ratio)
        costs = [c.quality.point for _, c in items if c.quality.point is not None]
        quality = ""
        if costs:
            worst = max(costs)
            quality = (
                "; excess loss within noise of fp32"
                if all(c.quality.within_noise for _, c in items if c.quality.point is not None)
                else f"; excess loss up to {fmt.nats(worst, signed=True)} nats vs fp32"
            )
        out.append(
            f"{precision} runs at {speed} fp32's tokens/s in {fmt.backend_name(backend)} "
            f"{_where(cells, backend)} ({detail}){quality}."
        )
    return out


def accumulation_findings(effects: list[Comparison]) -> list[str]:
    groups: dict[tuple[str, int], list[tuple[str, Comparison]]] = defaultdict(list)
    for c in effects:
        if (
            c.axes["precision"] == "fp32"
            and c.axes["pruning"] == "none"
            and c.axes["accumulation"] != 1
        ):
            groups[(c.backend, int(c.axes["accumulation"]))].append((c.workload, c))
    out = []
    for (backend, k), items in sorted(groups.items()):
        savings = [c.memory for _, c in items if c.memory.point is not None]
        if savings and all(e.within_noise for e in savings):
            memory = "no measurable memory saving"
        elif savings:
            memory = "peak memory " + ", ".join(
                f"{w} {fmt.percent(-c.memory.point, signed=True)}"
                for w, c in items
                if c.memory.point is not None
            )
        else:
            memory = "memory not comparable"
        speed = _speed_phrase([c.speedup for _, c in items])
        out.append(
            f"{k} accumulation steps in {fmt.backend_name(backend)}: {memory}; throughput {speed} "
            "of 1 step."
        )
    return out


def pruning_findings(effects: list[Comparison]) -> list[str]:
    groups: dict[tuple[str, str], list[tuple[str, Comparison]]] = defaultdict(list)
    for c in effects:
        if (
            c.axes["precision"] == "fp32"
            and c.axes["accumulation"] == 1
            and c.axes["pruning"] != "none"
        ):
            groups[(c.backend, str(c.axes["pruning"]))].append((c.workload, c))
    out = []
    for (backend, method), items in sorted(groups.items()):
        speed = [c.speedup for _, c in items if c.speedup.point is not None]
        if speed and all(e.within_noise or e.point < MEANINGFUL_SPEEDUP for e in speed):
            verdict = (
                f"no speedup ({_per_workload([(w, c.speedup) for w, c in items], fmt.ratio)}) — "
                "dense kernels do not skip zeros; it makes the model sparse, not faster"
            )
        else:
            verdict = f"speedup {_per_workload([(w, c.speedup) for w, c in items], fmt.ratio)}"
        costs = [c.quality for _, c in items if c.quality.point is not None]
        quality = ""
        if costs:
            quality = "; excess loss " + ", ".join(
                f"{w} {fmt.nats(c.quality.point, signed=True)} nats"
                for w, c in items
                if c.quality.point is not None
            )
        out.append(f"{method} pruning in {fmt.backend_name(backend)}: {verdict}{quality}.")
    return out


def framework_findings(ratios: list[Comparison], cells: pd.DataFrame) -> list[str]:
    if not ratios:
        return []
    ref = reference_backend(sorted(set(cells["backend"])))
    groups: dict[tuple[str, str], list[Comparison]] = defaultdict(list)
    for c in ratios:
        groups[(c.backend, str(c.axes["precision"]))].append(c)
    out = []
    for (backend, precision), items in sorted(groups.items()):
        points = [c.speedup.point for c in items if c.speedup.point]
        if not points:
            continue
        lo, hi = min(points), max(points)
        spread = (
            f" (range {fmt.ratio(lo)}–{fmt.ratio(hi)} over {len(points)} cells)"
            if len(points) > 1
            else ""
        )
        out.append(
            f"{fmt.backend_name(backend)} runs at {fmt.ratio(_geomean(points))} "
            f"{fmt.backend_name(ref)}'s tokens/s in {precision}{spread}."
        )
    return out


def parity_findings(parity: pd.DataFrame) -> list[str]:
    out = []
    if parity.empty:
        return out
    keys = ["run_id", "workload", "precision", "backends"]
    for key, group in parity.groupby(keys, sort=True, dropna=False):
        checks = group[group["check"].notna()]
        failed = sorted(str(n) for n in checks.loc[checks["check_passed"] == False, "check"])  # noqa: E712
        verdict = "passed" if bool(group["passed"].iloc[0]) else "FAILED"
        what = f"{len(checks) - len(failed)}/{len(checks)} checks"
        extra = f"; failed: {', '.join(failed)}" if failed else ""
        out.append(f"Parity {key[3]} on {key[1]} {key[2]}: {verdict} ({what}{extra}).")
    return out


def outcome_findings(cells: pd.DataFrame) -> list[str]:
    out = []
    failed = cells[cells["failed"]]
    if len(failed):
        counts = defaultdict(int)
        for status in failed["status"]:
            for part in str(status).split(", "):
                name = part.split()[0]
                if name not in ("ok", "skipped"):
                    counts[name] += 1
        out.append(
            f"{len(failed)} cell(s) failed "
            f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); their records never "
            "enter the statistics."
        )
    skipped = int(cells["skipped"].sum())
    if skipped:
        out.append(f"{skipped} cell(s) skipped (see Failures and skips for the reasons).")
    warned = sorted({cell for cell, _ in stability_warnings(cells)})
    if warned:
        out.append(f"{len(warned)} cell(s) carry stability warnings; read their numbers with care.")
    return out


def frontier_findings(fronts: list[Frontier], cells: pd.DataFrame) -> list[str]:
    out = []
    by_hash = cells.set_index("cell_hash")
    for f in fronts:
        picks = [p for p in f.picks if p[1] is not None]
        if not picks:
            continue
        budget, best = picks[-1]
        if f.basis == TIME_TO_TARGET and f.weighed is not None:
            row = f.weighed.set_index("cell_hash").loc[best]
            out.append(
                f"Fastest {f.workload} cell to the target ({f.target}): {row['cell_id']} (median "
                f"{row['time_to_target_s']:.3g} s to the target, {row['n_reached']}/"
                f"{row['n_seeds']} seeds, {fmt.mib(row[f.memory_column])} "
                f"{fmt.memory_source(f.memory_source)})."
            )
            continue
        row = by_hash.loc[best]
        out.append(
            f"Fastest {f.workload} cell within {f.tolerance_nats:g} nats of fp32: {row['cell_id']} "
            f"({fmt.num(row['tokens_per_s'])} tokens/s, {fmt.mib(row[f.memory_column])} "
            f"{fmt.memory_source(f.memory_source)})."
        )
    return out


def findings(
    cells: pd.DataFrame,
    effects: list[Comparison],
    ratios: list[Comparison],
    parity: pd.DataFrame,
    fronts: list[Frontier],
) -> list[str]:
    return [
        *precision_findings(effects, cells),
        *accumulation_findings(effects),
        *pruning_findings(effects),
        *framework_findings(ratios, cells),
        *scaling_findings(cells),
        *parity_findings(parity),
        *frontier_findings(fronts, cells),
        *outcome_findings(cells),
    ]
