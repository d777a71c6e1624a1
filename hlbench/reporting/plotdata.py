"""What the report's plots show, computed once for both forms (PNG via hlbench.reporting.plots, the
HTML report's interactive figures via hlbench.reporting.interactive): per plot a list of panels (one
per workload), each a list of series with their points, error-bar bounds, hover text and colour.

Rules every plot follows:
- error bars are the report's own intervals: tokens/s from the median step time with its 95%
  bootstrap interval (hlbench.reporting.stats, as in the effects section); memory and excess loss
  with their range over the ok repeats;
- colours come from `palette(n)`, sized to the panel's series count, so none repeats in a panel;
- legends name cells without the workload (the panel's title says it).
The trade-off scatter, loss excess and memory timelines are in hlbench.reporting.plotseries.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting import stats
from hlbench.reporting.cells import BASELINE_AXES

MAX_SERIES = 12
# matplotlib's tab10 and the light halves of tab20: 20 colours people know, none alike
TAB10 = (
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"),
    *("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"),
)
TAB20_LIGHT = (
    *("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5"),
    *("#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"),
)
FLOAT = np.float64


def palette(n: int) -> list[str]:
    """n distinct colours: tab10, then tab20's light shades, then evenly spaced hues."""
    if n <= len(TAB10) + len(TAB20_LIGHT):
        return list((*TAB10, *TAB20_LIGHT)[:n])
    colours = []
    for i in range(n):
        # alternate lightness so neighbours in hue still differ
        r, g, b = colorsys.hls_to_rgb(i / n, 0.38 if i % 2 else 0.58, 0.7)
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colours


@dataclass(frozen=True)
class Series:
    label: str  # legend entry
    x: np.ndarray  # numbers, or category positions for bars
    y: np.ndarray
    hover: list[str]  # one line of text per point: the cell and its figures
    colour: str = ""
    y_lo: np.ndarray | None = None  # error-bar bounds (absolute values), NaN where none
    y_hi: np.ndarray | None = None
    bold: np.ndarray | None = None  # mask of points drawn heavier (in a measured window)
    # False for the further lines of one legend entry (a cell's other seeds, in its colour)
    legend: bool = True

    def has_errors(self) -> bool:
        return self.y_lo is not None and bool(np.isfinite(self.y_lo).any())


@dataclass(frozen=True)
class Panel:
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    kind: str = "line"  # line, bar, scatter
    categories: list[str] = field(default_factory=list)  # bar x tick labels
    x_log2: bool = False
    zero_line: str = ""  # label of a reference line at y = 0 ("" = none)
    shades: list[tuple[float, float]] = field(default_factory=list)  # x spans shaded
    shade_label: str = ""
    y_log: bool = False
    h_line: tuple[float, str] | None = None  # a dashed reference line: (y, legend label)
    thin: bool = False  # thin lines, small markers: many lines of one colour stay apart


@dataclass(frozen=True)
class Plot:
    key: str  # file stem of the PNG, div id of the HTML figure
    panels: list[Any]  # Panel, or plotseries.TradeOff for the trade-off scatter
    note: str = ""  # how to read it: shown under the plot in both forms


def coloured(series: list[Series]) -> list[Series]:
    """The series with palette colours, in order."""
    colours = palette(len(series))
    return [replace(s, colour=c) for s, c in zip(series, colours)]


def short_id(cell_id: str, workload: str) -> str:
    prefix = f"{workload}/"
    return cell_id[len(prefix) :] if cell_id.startswith(prefix) else cell_id


def ok_cells(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["n_ok"] > 0]


def workloads(rows: pd.DataFrame) -> list[str]:
    return sorted(set(rows["workload"]))


def throughput_interval(cell: Any) -> tuple[float, float, float]:
    """tokens/s from the median step time, and its 95% bootstrap interval (NaN where unknown)."""
    median_s, tokens = cell["step_time_median_s"], cell["tokens_per_step"]
    if fmt.missing(median_s) or fmt.missing(tokens) or not median_s:
        return np.nan, np.nan, np.nan
    boot = np.asarray(cell["boot_median_step_s"], dtype=FLOAT)
    point = float(tokens) / float(median_s)
    if not len(boot):
        return point, np.nan, np.nan
    lo, hi = np.percentile(float(tokens) / boot, stats.INTERVAL)
    return point, float(lo), float(hi)


def repeat_range(values: Any, scale: float = 1.0) -> tuple[float, float]:
    """Min and max over the ok repeats (NaN without any)."""
    a = np.asarray(values, dtype=FLOAT)
    return (float(a.min()) * scale, float(a.max()) * scale) if len(a) else (np.nan, np.nan)


def _bar_figures(
    c: Any, column: str, scale: float
) -> tuple[float, float, float, str]:  # point, lo, hi, hover
    if column == "tokens_per_s":
        point, lo, hi = throughput_interval(c)
        text = f"{fmt.num(point)} tokens/s{fmt.interval(lo, hi, fmt.num)} (95% interval)"
        return point, lo, hi, text + f", {c['n_ok']} ok run(s)"
    point = np.nan if fmt.missing(c[column]) else float(c[column]) * scale
    lo, hi = repeat_range(c["peak_mem_each_bytes"], scale)
    source = fmt.memory_source(c["peak_mem_source"])
    text = f"{fmt.mib(c[column])} ({source}), range over {c['n_ok']} ok run(s)"
    return point, lo, hi, text + fmt.interval(lo / scale, hi / scale, fmt.mib)


def precision_bars(cells: pd.DataFrame) -> list[Plot]:
    """Throughput and peak memory per precision, a bar series per backend, at 1 accumulation step
    and no pruning; empty when no such cell ran ok."""
    base = ok_cells(cells)
    base = base[
        (base["accumulation"] == BASELINE_AXES["accumulation"])
        & (base["pruning"] == BASELINE_AXES["pruning"])
    ]
    if base.empty:
        return []
    throughput = [_bar_panel(base, w, "tokens_per_s", 1.0) for w in workloads(base)]
    memory = [_bar_panel(base, w, "peak_mem_bytes", 2**-20) for w in workloads(base)]
    return [
        Plot(
            "throughput",
            throughput,
            "Tokens/s = tokens per step / median step time; error bars: its 95% bootstrap "
            "interval (as in the effects section).",
        ),
        Plot("peak-memory", memory, "Median over the ok repeats; error bars: their range."),
    ]


def _bar_panel(base: pd.DataFrame, workload: str, column: str, scale: float) -> Panel:
    label = "tokens/s" if column == "tokens_per_s" else "peak memory (MiB)"
    rows = base[base["workload"] == workload]
    precisions = list(dict.fromkeys(rows["precision"]))  # already in precision order
    series = []
    for backend in sorted(set(rows["backend"])):
        b = rows[rows["backend"] == backend].drop_duplicates("precision")
        by = {c["precision"]: c for _, c in b.iterrows()}
        figures = [
            _bar_figures(by[p], column, scale) if p in by else (np.nan, np.nan, np.nan, "")
            for p in precisions
        ]
        hover = [
            f"{by[p]['cell_id']}: {f[3]}" if p in by else "" for p, f in zip(precisions, figures)
        ]
        sources = sorted({fmt.memory_source(s) for s in b["peak_mem_source"].dropna()})
        legend = fmt.backend_name(backend) + (
            f" ({', '.join(sources)})" if column == "peak_mem_bytes" else ""
        )
        y, lo, hi = (np.array([f[i] for f in figures], dtype=FLOAT) for i in range(3))
        series.append(Series(legend, np.arange(len(precisions), dtype=FLOAT), y, hover, "", lo, hi))
    return Panel(
        f"{workload}: {label} per precision (1 step, no pruning)",
        "precision",
        label,
        coloured(series),
        kind="bar",
        categories=precisions,
    )


def sparsity_vs_loss(cells: pd.DataFrame) -> Plot | None:
    rows = ok_cells(cells)
    # an unpruned cell is 0% sparse by definition; pruned cells must report what they achieved
    sparsity = rows["sparsity"].where(
        rows["sparsity"].notna(), rows["pruning"].map(lambda p: 0.0 if p == "none" else np.nan)
    )
    rows = rows.assign(_sparsity=sparsity)
    rows = rows[rows["_sparsity"].notna() & rows["excess_eval_loss_nats"].notna()]
    if not (rows["_sparsity"] > 0).any():
        return None
    panels = []
    for workload in workloads(rows):
        w = rows[rows["workload"] == workload]
        series = []
        for method in list(dict.fromkeys(w["pruning"]))[:MAX_SERIES]:
            m = w[w["pruning"] == method]
            ranges = [repeat_range(e) for e in m["excess_each_nats"]]
            hover = [
                f"{c['cell_id']}: sparsity {fmt.percent(c['_sparsity'])}, excess loss "
                f"{fmt.nats(c['excess_eval_loss_nats'])} nats{fmt.interval(lo, hi, fmt.nats)}"
                for (_, c), (lo, hi) in zip(m.iterrows(), ranges)
            ]
            series.append(
                Series(
                    str(method),
                    m["_sparsity"].to_numpy(FLOAT) * 100,
                    m["excess_eval_loss_nats"].to_numpy(FLOAT),
                    hover,
                    "",
                    np.array([r[0] for r in ranges], dtype=FLOAT),
                    np.array([r[1] for r in ranges], dtype=FLOAT),
                )
            )
        panels.append(
            Panel(
                f"{workload}: sparsity vs excess loss",
                "achieved sparsity (%)",
                "excess eval loss (nats)",
                coloured(series),
                kind="scatter",
            )
        )
    return Plot("sparsity-vs-loss", panels, "Error bars: range over the ok repeats.")


def accumulation_vs_memory(cells: pd.DataFrame) -> Plot | None:
    rows = ok_cells(cells)
    rows = rows[(rows["pruning"] == "none") & rows["peak_mem_bytes"].notna()]
    if rows["accumulation"].nunique() < 2:
        return None
    panels = []
    for workload in workloads(rows):
        w = rows[rows["workload"] == workload]
        series = []
        for backend, precision in list(dict.fromkeys(zip(w["backend"], w["precision"])))[
            :MAX_SERIES
        ]:
            s = w[(w["backend"] == backend) & (w["precision"] == precision)].sort_values(
                "accumulation"
            )
            source = ", ".join(
                sorted({fmt.memory_source(x) for x in s["peak_mem_source"].dropna()})
            )
            ranges = [repeat_range(e, 2**-20) for e in s["peak_mem_each_bytes"]]
            hover = [
                f"{c['cell_id']}: {fmt.mib(c['peak_mem_bytes'])} ({source})"
                for _, c in s.iterrows()
            ]
            series.append(
                Series(
                    f"{fmt.backend_name(backend)} {precision} ({source})",
                    s["accumulation"].to_numpy(FLOAT),
                    s["peak_mem_bytes"].to_numpy(FLOAT) / 2**20,
                    hover,
                    "",
                    np.array([r[0] for r in ranges], dtype=FLOAT),
                    np.array([r[1] for r in ranges], dtype=FLOAT),
                )
            )
        panels.append(
            Panel(
                f"{workload}: accumulation steps vs peak memory",
                "accumulation steps",
                "peak memory (MiB)",
                coloured(series),
                x_log2=True,
            )
        )
    return Plot("accumulation-vs-memory", panels, "Error bars: range over the ok repeats.")
