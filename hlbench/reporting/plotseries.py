"""The plots that need more than a column per axis: the trade-off scatter (from
hlbench.reporting.frontier), training loss as excess over each cell's fp32 twin, and memory over
time with the measured windows. Data only; hlbench.reporting.plots and .interactive draw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting import plotdata
from hlbench.reporting.cells import BASELINE_AXES, variant_axes
from hlbench.reporting.effects import LOSS_NOISE_NATS
from hlbench.reporting.frontier import TIME_TO_TARGET, Frontier
from hlbench.reporting.plotdata import (
    FLOAT,
    MAX_SERIES,
    Panel,
    Plot,
    Series,
    coloured,
    ok_cells,
    short_id,
    workloads,
)

TIME_NOTE = (
    "t = 0 is the start of each cell's first measured window; before it (t < 0) the worker starts, "
    "builds the model and runs its warm-up steps. Shaded: the measured windows (of any cell in the "
    "panel); a heavier line: that cell's own windows."
)
LOSS_NOTE = (
    "Each cell's training loss minus its fp32 twin's at the same step (the same cell in fp32; an "
    "fp32 cell against fp32, 1 step, no pruning): 0 = the same curve."
)

FRONT_NOTE = (
    f"Colour: excess eval loss (the scale spans at least {LOSS_NOISE_NATS:g} nats, the effects "
    "section's noise level). Pareto front (labelled): the cells no other beats on tokens/s ↑, "
    "memory ↓ and excess loss ↓ together, so a front cell may sit below a faster one that loses "
    "more quality."
)


@dataclass(frozen=True)
class TradeOff:
    """One workload's cells as (memory, tokens/s) points coloured by excess loss."""

    title: str
    x_label: str
    labels: list[str]  # short cell ids
    memory_mib: np.ndarray
    # the y values and the colour: tokens/s and excess loss, or on a time-to-target frontier the
    # median time to target and the share of seeds that reached it (y_label, colour_label say)
    tokens_per_s: np.ndarray
    excess_nats: np.ndarray
    hover: list[str]
    front: list[int]  # indices of the Pareto-front cells, by increasing memory
    colour_range: tuple[float, float]  # excess loss at the two ends of the colour scale
    y_label: str = "tokens/s"
    colour_label: str = "excess eval loss (nats)"


TARGET_FRONT_NOTE = (
    "On time to target (a panel per workload and target): y is the median time to target over "
    "seeds (lower is better), colour the share of seeds that reached it; cells whose median seed "
    "did not reach it are left off (the frontier section names them). Pareto front (labelled): "
    "the cells no other beats on time to target ↓ and memory ↓ together."
)


def trade_off(cells: pd.DataFrame, fronts: list[Frontier]) -> Plot | None:
    """Per workload with a frontier: every ok cell the frontier weighed, and its front."""
    ok = ok_cells(cells)
    panels: list[TradeOff] = []
    for f in fronts:
        if f.basis == TIME_TO_TARGET:
            if f.weighed is not None and len(f.weighed):
                panels.append(_target_trade_off(f))
            continue
        rows = ok[
            (ok["workload"] == f.workload)
            & ok["tokens_per_s"].notna()
            & ok["excess_eval_loss_nats"].notna()
            & ok[f.memory_column].notna()
        ]
        ids, memory, order = _front_points(rows, f)
        source = fmt.memory_source(f.memory_source)
        hover = [
            f"{c['cell_id']}: {fmt.num(c['tokens_per_s'])} tokens/s, {fmt.mib(c[f.memory_column])} "
            f"({source}), excess loss {fmt.nats(c['excess_eval_loss_nats'])} nats"
            + (" (on the front)" if i in order else "")
            for i, (_, c) in enumerate(rows.iterrows())
        ]
        panels.append(
            TradeOff(
                f"{f.workload}: tokens/s against memory",
                f"memory (MiB, {source})",
                [short_id(c, f.workload) for c in ids],
                memory,
                rows["tokens_per_s"].to_numpy(FLOAT),
                rows["excess_eval_loss_nats"].to_numpy(FLOAT),
                hover,
                order,
                colour_range(rows["excess_eval_loss_nats"].to_numpy(FLOAT)),
            )
        )
    if not panels:
        return None
    bases = {f.basis for f in fronts}
    notes = [FRONT_NOTE] if bases != {TIME_TO_TARGET} else []
    notes += [TARGET_FRONT_NOTE] if TIME_TO_TARGET in bases else []
    return Plot("trade-off", panels, " ".join(notes))


def _front_points(rows: pd.DataFrame, f: Frontier) -> tuple[list[str], np.ndarray, list[int]]:
    """The rows' cell ids, their memory in MiB, and the indices of those on the front in order of
    memory (ties by id): the front's line."""
    ids = list(rows["cell_id"])
    memory = rows[f.memory_column].to_numpy(FLOAT) / 2**20
    on_front = set(f.cells["cell_id"])
    order = sorted(
        (i for i, c in enumerate(ids) if c in on_front), key=lambda i: (memory[i], ids[i])
    )
    return ids, memory, order


def _target_trade_off(f: Frontier) -> TradeOff:
    """A time-to-target frontier's cells as (memory, time to target) points."""
    assert f.weighed is not None
    rows = f.weighed
    ids, memory, order = _front_points(rows, f)
    source = fmt.memory_source(f.memory_source)
    share = (rows["n_reached"] / rows["n_seeds"]).to_numpy(FLOAT)
    hover = [
        f"{c['cell_id']}: {c['time_to_target_s']:.3g} s to the target (median), "
        f"{c['n_reached']}/{c['n_seeds']} seeds, {fmt.mib(c[f.memory_column])} ({source})"
        + (" (on the front)" if i in order else "")
        for i, (_, c) in enumerate(rows.iterrows())
    ]
    return TradeOff(
        f"{f.workload}, {f.target}: time to target (lower is better) against memory",
        f"memory (MiB, {source})",
        [short_id(c, f.workload) for c in ids],
        memory,
        rows["time_to_target_s"].to_numpy(FLOAT),
        share,
        hover,
        order,
        (0.0, 1.0),
        y_label="time to target (s, median)",
        colour_label="share of seeds that reached the target",
    )


def colour_range(excess_nats: np.ndarray) -> tuple[float, float]:
    """The colour scale's ends: the data's range, widened to at least LOSS_NOISE_NATS about its
    middle, so that differences the report calls noise do not span the whole scale."""
    lo, hi = float(np.min(excess_nats)), float(np.max(excess_nats))
    half = max(hi - lo, LOSS_NOISE_NATS) / 2
    middle = (lo + hi) / 2
    return middle - half, middle + half


def _norm(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def fp32_twins(cells: pd.DataFrame) -> dict[str, Any]:
    """cell id -> the row its loss curve is compared with: the same cell in fp32, or for an fp32
    cell the fp32, 1-step, unpruned baseline; cells that are their own reference are left out."""
    rows = ok_cells(cells)
    rows = rows[rows["loss_curve_nats"].map(len) > 0]
    axes = ["workload", "backend", *variant_axes(cells), "precision", "accumulation", "pruning"]

    def key(c: Any, **override: Any) -> tuple[str, ...]:
        return tuple(_norm(override.get(a, c[a])) for a in axes)

    by_key = {key(c): c for _, c in rows.iterrows()}
    twins = {}
    for _, c in rows.iterrows():
        twin = by_key.get(key(c, precision="fp32"))
        if twin is None or twin["cell_id"] == c["cell_id"]:
            twin = by_key.get(key(c, **BASELINE_AXES))
        if twin is not None and twin["cell_id"] != c["cell_id"]:
            twins[c["cell_id"]] = twin
    return twins


def loss_excess(cells: pd.DataFrame) -> Plot | None:
    """Per workload: every cell's training loss minus its fp32 twin's, step by step."""
    twins = fp32_twins(cells)
    rows = ok_cells(cells)
    rows = rows[rows["cell_id"].isin(list(twins))]
    if rows.empty:
        return None
    panels = []
    for workload in workloads(rows):
        series = []
        for _, c in rows[rows["workload"] == workload].head(MAX_SERIES).iterrows():
            twin = twins[c["cell_id"]]
            ours = np.asarray(c["loss_curve_nats"], dtype=FLOAT)
            theirs = np.asarray(twin["loss_curve_nats"], dtype=FLOAT)
            n = min(len(ours), len(theirs))  # a cell stopped by its budget has a shorter curve
            excess = ours[:n] - theirs[:n]
            label = f"{short_id(c['cell_id'], workload)} − {short_id(twin['cell_id'], workload)}"
            hover = [
                f"{label}, step {k}: {fmt.nats(v, signed=True)} nats" for k, v in enumerate(excess)
            ]
            series.append(Series(label, np.arange(n, dtype=FLOAT), excess, hover))
        panels.append(
            Panel(
                f"{workload}: training loss over the fp32 twin",
                "step (warm-up included)",
                "train loss − fp32 twin's (nats/token)",
                coloured(series),
                zero_line="fp32 twin",
            )
        )
    return Plot("loss-curves", panels, LOSS_NOTE)


def merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of [start, end] spans as disjoint spans, in order."""
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def in_windows(t: np.ndarray, windows: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(t), dtype=bool)
    for lo, hi in np.asarray(windows, dtype=FLOAT).reshape(-1, 2):
        mask |= (t >= lo) & (t <= hi)
    return mask


def memory_over_time(cells: pd.DataFrame) -> Plot | None:
    """Per workload: each cell's first sampled repeat, memory against seconds from its first
    measured window, its windows marked."""
    rows = ok_cells(cells)
    rows = rows[rows["telemetry"].map(len) > 0]
    if rows.empty:
        return None
    panels = []
    for workload in workloads(rows):
        series, spans = [], []
        for _, c in rows[rows["workload"] == workload].head(MAX_SERIES).iterrows():
            repeat, t, mem, windows = c["telemetry"][0]
            t, mib = np.asarray(t, dtype=FLOAT), np.asarray(mem, dtype=FLOAT) / 2**20
            label = f"{short_id(c['cell_id'], workload)} #{repeat}"
            hover = [f"{c['cell_id']} #{repeat}: {s:.2f} s, {m:,.1f} MiB" for s, m in zip(t, mib)]
            series.append(Series(label, t, mib, hover, bold=in_windows(t, windows)))
            spans += [(float(lo), float(hi)) for lo, hi in np.asarray(windows).reshape(-1, 2)]
        panels.append(
            Panel(
                f"{workload}: memory over time (telemetry samples)",
                "seconds from the first measured window (< 0: start-up, warm-up)",
                "memory (MiB)",
                coloured(series),
                shades=merged(spans),
                shade_label="measured windows",
            )
        )
    return Plot("memory-over-time", panels, TIME_NOTE)


# Every plot of the report, in order: key -> (title, why it is missing when there is no data)
PLOTS = {
    "throughput": ("Throughput per precision", "no ok cell at 1 accumulation step without pruning"),
    "peak-memory": (
        "Peak memory per precision",
        "no ok cell at 1 accumulation step without pruning",
    ),
    "trade-off": (
        "Trade-off: tokens/s against memory",
        "no ok cell has tokens/s, memory and excess loss together",
    ),
    "memory-over-time": ("Memory over time", "no telemetry samples in these records"),
    "loss-curves": (
        "Loss curves: excess over the fp32 twin",
        "no per-step losses of a cell and its fp32 twin in these records",
    ),
    "sparsity-vs-loss": ("Sparsity vs excess loss", "no pruned cell reports its sparsity"),
    "accumulation-vs-memory": (
        "Accumulation steps vs peak memory",
        "fewer than two accumulation values with a memory figure",
    ),
}


def catalogue(cells: pd.DataFrame, fronts: list[Frontier]) -> list[tuple[str, Plot | None, str]]:
    """(title, the plot's data or None, why there is none) for every plot, in report order."""
    built: dict[str, Plot] = {}
    if len(cells):
        plots = [
            *plotdata.precision_bars(cells),
            trade_off(cells, fronts),
            memory_over_time(cells),
            loss_excess(cells),
            plotdata.sparsity_vs_loss(cells),
            plotdata.accumulation_vs_memory(cells),
        ]
        built = {p.key: p for p in plots if p is not None}
    titles = {key: title for key, (title, _) in PLOTS.items()}
    bases = {f.basis for f in fronts}
    if TIME_TO_TARGET in bases:  # the trade-off's y axis is time to target there
        titles["trade-off"] = (
            "Trade-off: time to target against memory"
            if bases == {TIME_TO_TARGET}
            else "Trade-off: tokens/s or time to target against memory"
        )
    return [(titles[key], built.get(key), reason) for key, (_, reason) in PLOTS.items()]
