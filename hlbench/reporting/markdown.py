"""Markdown assembly: one function per report section, each returning its lines; the sections of
relative figures (effects, frameworks, scaling) are in hlbench.reporting.relative.

Everything here is text from already-computed numbers (hlbench.reporting.cells/frontier/findings),
in a fixed order with fixed number formats: the same records give byte-identical markdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from tabulate import tabulate

from hlbench.reporting import formatting as fmt
from hlbench.reporting.cells import MIN_STEPS, UNSTABLE_CV, stability_warnings, variant_axes
from hlbench.reporting.frontier import TIME_TO_TARGET, Frontier


def _cell_text(value: Any) -> str:
    text = fmt.MISSING if fmt.missing(value) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> list[str]:
    body = [[_cell_text(v) for v in row] for row in rows]
    return tabulate(
        body, headers=list(headers), tablefmt="github", disable_numparse=True
    ).splitlines() + [""]


def _distinct(values: Iterable[Any]) -> list[str]:
    return sorted({str(v) for v in values if not fmt.missing(v)})


def header(
    df: pd.DataFrame,
    parity: pd.DataFrame,
    cells: pd.DataFrame,
    files: Sequence[str],
    skipped: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> list[str]:
    """Title, suite, runs, dates, records (and malformed ones skipped, and what the shards of a
    sharded run lack), environment."""
    suites = _distinct([*df["suite"], *parity["suite"]])
    runs = _distinct([*df["run_id"], *parity["run_id"]])
    dates = _distinct(df["started_at"])
    date = f"{dates[0]} – {dates[-1]}" if len(dates) > 1 else (dates[0] if dates else fmt.MISSING)
    lines = [
        f"# hlbench report: {', '.join(suites) or fmt.MISSING}",
        "",
        f"- **Suite:** {', '.join(suites) or fmt.MISSING}",
        f"- **Runs:** {', '.join(runs) or fmt.MISSING}",
        f"- **Date:** {date} (first and last record)",
        f"- **Records:** {len(df)} cell record(s) ({len(cells)} cells, "
        f"{int((cells['n_ok'] > 0).sum())} with an ok run), {len(parity)} parity check(s), from "
        f"{', '.join(sorted(files))}",
        *(f"- **Skipped:** {note}" for note in skipped),
        *(f"- **Warning:** {note}" for note in warnings),
        "",
        "## Environment",
        "",
    ]
    # a skipped record's device is the suite's request ("auto")
    ran = df[df["ok"]] if df["ok"].any() else df
    devices = _distinct(
        f"{d} ({n})" if not fmt.missing(n) else d for d, n in zip(ran["device"], ran["device_name"])
    )
    commits = _distinct(
        f"{v} (commit {c[:12]})" if not fmt.missing(c) else v
        for v, c in zip(df["hlbench_version"], df["hlbench_commit"])
    )
    rows = [
        ["devices", "; ".join(devices) or fmt.MISSING],
        ["driver", "; ".join(_distinct(df["driver_version"])) or fmt.MISSING],
        ["frameworks", "; ".join(_distinct(df["framework_version"])) or fmt.MISSING],
        ["hlbench", "; ".join(commits) or fmt.MISSING],
    ]
    return lines + table(rows, ["", "value"])


def findings(items: list[str]) -> list[str]:
    lines = ["## Findings", "", "Computed from the records above; none is written by hand.", ""]
    return (
        lines + ([f"- {item}" for item in items] or ["- No ok cells: nothing to conclude."]) + [""]
    )


def frontier(fronts: list[Frontier], cells: pd.DataFrame) -> list[str]:
    lines = ["## What to train with: the trade-off frontier", ""]
    if not fronts:
        return lines + ["No ok cell has tokens/s, memory and excess loss together.", ""]
    by_hash = cells.set_index("cell_hash")
    for f in fronts:
        if f.basis == TIME_TO_TARGET:
            lines += _target_frontier(f)
            continue
        source = fmt.memory_source(f.memory_source)
        lines += [
            f"### {f.workload}",
            "",
            f"Memory compared as {source}. Quality limit: excess eval loss within "
            f"{f.tolerance_nats:g} nats of the backend's fp32 baseline.",
            "",
        ]
        rows = []
        for budget, cell_hash in f.picks:
            if cell_hash is None:
                rows.append([f"≤ {fmt.mib(budget)}", "nothing fits within tolerance", "", "", ""])
                continue
            c = by_hash.loc[cell_hash]
            rows.append(
                [
                    f"≤ {fmt.mib(budget)}",
                    c["cell_id"],
                    fmt.num(c["tokens_per_s"]),
                    fmt.mib(c[f.memory_column]),
                    fmt.nats(c["excess_eval_loss_nats"]),
                ]
            )
        lines += table(
            rows,
            [
                "memory budget",
                "fastest cell within tolerance",
                "tokens/s",
                source,
                "excess loss (nats)",
            ],
        )
        lines += ["Cells not dominated on (tokens/s ↑, memory ↓, excess loss ↓):", ""]
        lines += table(
            [
                [
                    c["cell_id"],
                    fmt.num(c["tokens_per_s"]),
                    fmt.mib(c[f.memory_column]),
                    fmt.nats(c["excess_eval_loss_nats"]),
                ]
                for _, c in f.cells.iterrows()
            ],
            ["cell", "tokens/s", source, "excess loss (nats)"],
        )
    return lines


def _seconds(x: float) -> str:
    return "not reached" if x == float("inf") else f"{x:.3g} s"


def _time_to_target(c: Any) -> str:
    """Median [95% interval] over seeds; a bound past the budget reads "not reached"."""
    lo, hi = c["ttt_lo_s"], c["ttt_hi_s"]
    bounds = "" if fmt.missing(lo) else f" [{_seconds(lo)}–{_seconds(hi)}]"
    return _seconds(c["time_to_target_s"]) + bounds


def _target_frontier(f: Frontier) -> list[str]:
    """A frontier on time to target: its basis said, the fastest cell to the target per budget."""
    source = fmt.memory_source(f.memory_source)
    lines = [
        f"### {f.workload}, {f.target}",
        "",
        f"Speed basis: time to target ({f.target}), the median over seeds with its 95% interval "
        "(lower is better), not tokens/s. Reaching the target is the quality bar, so no loss "
        f"tolerance applies. Memory compared as {source}.",
        "",
    ]
    if f.left_off:
        lines += [
            f"Left off (the median seed did not reach the target): {', '.join(f.left_off)}.",
            "",
        ]
    if f.weighed is None or f.weighed.empty:
        return lines + ["No cell reached the target in its median seed.", ""]
    by_hash = f.weighed.set_index("cell_hash")
    rows = []
    for budget, cell_hash in f.picks:
        if cell_hash is None:
            rows.append([f"≤ {fmt.mib(budget)}", "nothing fits", "", "", ""])
            continue
        c = by_hash.loc[cell_hash]
        rows.append(
            [
                f"≤ {fmt.mib(budget)}",
                c["cell_id"],
                _time_to_target(c),
                f"{c['n_reached']}/{c['n_seeds']}",
                fmt.mib(c[f.memory_column]),
            ]
        )
    lines += table(
        rows,
        ["memory budget", "fastest cell to the target", "time to target", "seeds reached", source],
    )
    lines += ["Cells not dominated on (time to target ↓, memory ↓):", ""]
    front = [
        [
            c["cell_id"],
            _time_to_target(c),
            f"{c['n_reached']}/{c['n_seeds']}",
            fmt.mib(c[f.memory_column]),
        ]
        for _, c in f.cells.iterrows()
    ]
    return lines + table(front, ["cell", "time to target", "seeds reached", source])


def _step_time(c: Any) -> str:
    if fmt.missing(c["step_time_median_s"]):
        return fmt.MISSING
    low, high = fmt.ms(c["step_time_q25_s"]), fmt.ms(c["step_time_q75_s"])
    return f"{fmt.ms(c['step_time_median_s'])} [{low}–{high}]"


def _memory(c: Any) -> str:
    return (
        fmt.MISSING
        if fmt.missing(c["peak_mem_bytes"])
        else f"{fmt.mib(c['peak_mem_bytes'])} ({fmt.memory_source(c['peak_mem_source'])})"
    )


def _mfu(c: Any) -> str:
    """MFU against the device's best peak, then against the cell's precision's own peak."""
    own = c.get("mfu_dtype")
    return fmt.percent(c["mfu"]) + ("" if fmt.missing(own) else f" ({fmt.percent(own)})")


def matrix(cells: pd.DataFrame) -> list[str]:
    lines = [
        "## Results per workload and backend",
        "",
        "Medians over ok repeats; step time in ms, median [25th–75th percentile] of all measured "
        f"steps; {fmt.MISSING} = not measured or no ok run; ⚠ = see the stability warnings. MFU "
        "is against the device's best dense peak over all precisions (so precisions compare), in "
        "parentheses against the cell's own precision's peak.",
        "",
    ]
    variants = variant_axes(cells)
    warned = {cell for cell, _ in stability_warnings(cells)}
    for (workload, backend), group in cells.groupby(["workload", "backend"], sort=False):
        lines += [f"### {workload} · {fmt.backend_name(backend)}", ""]
        keys = ["pruning", *variants]
        for values, sub in group.groupby(keys, sort=False, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            lines += [
                "#### " + ", ".join(f"{k}: {_cell_text(v)}" for k, v in zip(keys, values)),
                "",
            ]
            rows = [
                [
                    c["precision"],
                    c["accumulation"],
                    c["status"] + (" ⚠" if c["cell_id"] in warned else ""),
                    f"{c['n_ok']}/{c['n_records']}",
                    fmt.num(c["tokens_per_s"]),
                    _step_time(c),
                    _memory(c),
                    fmt.joules(c["energy_per_token_j"]),
                    _mfu(c),
                    fmt.nats(c["excess_eval_loss_nats"]),
                ]
                for _, c in sub.iterrows()
            ]
            lines += table(
                rows,
                [
                    "precision",
                    "accum",
                    "status",
                    "ok runs",
                    "tokens/s",
                    "step time (ms)",
                    "peak memory",
                    "energy/token",
                    "MFU (own precision)",
                    "excess loss (nats)",
                ],
            )
    return lines


def off_the_clock(df: pd.DataFrame) -> list[str]:
    """Technique events (pruning) that ran between steps, and MFU figures withheld as calibration
    problems: per cell over its ok records; nothing when there are none."""
    ok = df[df["ok"]] if "ok" in df else df.iloc[0:0]
    lines: list[str] = []
    events = ok[ok.get("technique_event_count", pd.Series(0, index=ok.index)).fillna(0) > 0]
    if not events.empty:
        lines += ["## Technique events", ""]
        for cell_id, group in events.groupby("cell_id", sort=False):
            n = int(group["technique_event_count"].median())
            each_s = float(group["technique_event_s"].sum() / group["technique_event_count"].sum())
            technique = group["technique"].iloc[0]
            lines.append(
                f"- {cell_id}: {technique} events: {n} × {each_s:.2g} s, not in tokens/s "
                "(run between steps, off the clock)"
            )
        lines.append("")
    flagged = ok[ok["mfu_flag"].notna()] if "mfu_flag" in ok else ok.iloc[0:0]
    if not flagged.empty:
        lines += ["## MFU not reported: calibration problems", ""]
        for cell_id, group in flagged.groupby("cell_id", sort=False):
            lines.append(f"- {cell_id}: ⚠ {group['mfu_flag'].iloc[0]}")
        lines.append("")
    return lines


def failures(df: pd.DataFrame, cell_order: list[str]) -> list[str]:
    lines = ["## Failures and skips", ""]
    bad = df[~df["ok"]]
    if bad.empty:
        return lines + ["Every cell ran ok.", ""]
    rank = {cell_id: i for i, cell_id in enumerate(cell_order)}
    rows = sorted(
        (
            [r["cell_id"], r["repeat"], r["run_id"], r["status"], r["reason"]]
            for _, r in bad.iterrows()
        ),
        key=lambda r: (rank.get(r[0], len(rank)), str(r[2]), int(r[1])),
    )
    return lines + table(rows, ["cell", "repeat", "run", "status", "reason"])


def stability(cells: pd.DataFrame) -> list[str]:
    lines = [
        "## Stability warnings",
        "",
        "Window CV: coefficient of variation of the measured windows' mean step times (warned at "
        f"≥ {UNSTABLE_CV:.0%}); too few steps: fewer than {MIN_STEPS} measured over all ok "
        "repeats.",
        "",
    ]
    warnings = stability_warnings(cells)
    return lines + (table(warnings, ["cell", "warning"]) if warnings else ["None.", ""])


def plots(links: list[tuple[str, str | None, str, str]], plot_dir: str) -> list[str]:
    """Each plot's heading, then its image and how to read it, or why it is not plotted."""
    lines = ["## Plots", ""]
    for title, name, missing_reason, note in links:
        lines += [f"### {title}", ""]
        if name:
            lines += [f"![{title}]({plot_dir}/{name})", "", *([note, ""] if note else [])]
        else:
            lines += [f"Not plotted: {missing_reason}.", ""]
    return lines


def profiling(df: pd.DataFrame, plot: str | None, plot_dir: str) -> list[str]:
    """Phase shares per cell, operator-category shares per backend and precision (if profiled)."""
    from hlbench.reporting.profiling import category_rows, phase_rows, profiled

    cells = profiled(df)
    if cells.empty:
        return []
    lines = [
        "## Profiling",
        "",
        "From each cell's profiling pass after its measured windows (`hlbench run --profile`): "
        "step time in the pass, and each phase's share of it (a device sync around every phase).",
        "",
    ]
    lines += table(*phase_rows(cells))
    rows, headers = category_rows(cells)
    if rows:
        lines += ["Operator categories, share of profiled self time (mean over cells):", ""]
        lines += table(rows, headers)
    if plot:
        lines += [f"![Phase shares]({plot_dir}/{plot})", ""]
    return lines
