"""Report plots as PNG files with deterministic names, drawn with matplotlib's Agg backend from the
data of hlbench.reporting.plotdata / plotseries (one panel per workload).

`draw(plot, out_dir)` writes `<key>.png` and returns its name. Legends sit outside the axes, to
their right, so they never cover data; error bars, shaded windows and the trade-off's colour scale
are drawn from what the data carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hlbench.reporting.plotdata import Panel, Plot, Series
from hlbench.reporting.plotseries import TradeOff

PNG_METADATA = {"Software": None}  # no matplotlib version stamp: the same data gives the same bytes
FIG_WIDTH_IN = 10.0
AXES_RIGHT = 0.64  # the rest of the width holds the legend (or the colour scale)
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, "fontsize": 7}
COLOUR_MAP = "viridis"


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def draw(plot: Plot, out_dir: Path) -> str:
    """Draw a plot (a panel per workload) to `out_dir/<key>.png`; returns the file name."""
    plt = pyplot()
    fig = figure(plot)
    path = out_dir / f"{plot.key}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata=PNG_METADATA)
    plt.close(fig)
    return path.name


def figure(plot: Plot) -> Any:
    """The matplotlib figure of a plot, a panel per workload (the caller closes it)."""
    plt = pyplot()
    height_in = 3.2 * len(plot.panels)
    fig, axes = plt.subplots(len(plot.panels), 1, figsize=(FIG_WIDTH_IN, height_in), squeeze=False)
    for ax, panel in zip(axes[:, 0], plot.panels):
        if isinstance(panel, TradeOff):
            _trade_off(fig, ax, panel)
        else:
            _panel(ax, panel)
        ax.set_title(panel.title, fontsize=10)
        ax.grid(True, alpha=0.3)
    # fixed margins instead of tight_layout, which costs a full extra draw per figure
    fig.subplots_adjust(
        left=0.1,
        right=AXES_RIGHT,
        bottom=0.55 / height_in + 0.02,
        top=1 - 0.35 / height_in,
        hspace=0.5,
    )
    return fig


def _errors(s: Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(points with an interval, [below, above] distances) or None without any."""
    if not s.has_errors():
        return None
    assert s.y_lo is not None and s.y_hi is not None
    keep = np.isfinite(s.y) & np.isfinite(s.y_lo) & np.isfinite(s.y_hi)
    below = np.clip(s.y - s.y_lo, 0.0, None)[keep]
    above = np.clip(s.y_hi - s.y, 0.0, None)[keep]
    return keep, np.vstack([below, above])


def _panel(ax: Any, panel: Panel) -> None:
    for lo, hi in panel.shades:
        ax.axvspan(lo, hi, color="0.85", alpha=0.5, linewidth=0, zorder=0)
    if panel.shades:  # one legend entry for all spans
        ax.fill_between([], [], color="0.85", alpha=0.5, label=panel.shade_label)
    if panel.zero_line:
        ax.axhline(0.0, color="black", linewidth=0.8, label=panel.zero_line, zorder=1)
    if panel.h_line is not None:
        y, label = panel.h_line
        ax.axhline(y, color="black", linestyle="--", linewidth=1.0, label=label, zorder=1)
    if panel.kind == "bar":
        _bars(ax, panel)
    else:
        for s in panel.series:
            _line_or_points(ax, panel, s)
    if panel.x_log2:
        ax.set_xscale("log", base=2)
        ticks = sorted({float(x) for s in panel.series for x in s.x})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])  # 1, 2, 4 rather than 2⁰, 2¹, 2²
        ax.minorticks_off()
    if panel.y_log:
        ax.set_yscale("log")
    ax.set_xlabel(panel.x_label)
    ax.set_ylabel(panel.y_label)
    ax.legend(**LEGEND)


def _line_or_points(ax: Any, panel: Panel, s: Series) -> None:
    # matplotlib leaves labels starting with "_" out of the legend
    style = {"color": s.colour, "label": s.label if s.legend else "_nolegend_"}
    if panel.kind == "scatter":
        ax.scatter(s.x, s.y, s=18, zorder=3, **style)
    else:
        marker = "o" if len(s.x) < 12 or panel.thin else None
        size = {"linewidth": 0.7, "markersize": 2.5} if panel.thin else {"linewidth": 0.9}
        ax.plot(s.x, s.y, marker=marker, **size, **style)
        if s.bold is not None and s.bold.any():
            # the same line, heavier where the cell was in a measured window
            ax.plot(s.x, np.where(s.bold, s.y, np.nan), linewidth=2.2, color=s.colour)
    errors = _errors(s)
    if errors is not None:
        keep, yerr = errors
        ax.errorbar(
            s.x[keep], s.y[keep], yerr=yerr, fmt="none", ecolor=s.colour, capsize=3, zorder=2
        )


def _bars(ax: Any, panel: Panel) -> None:
    width = 0.8 / max(len(panel.series), 1)
    for i, s in enumerate(panel.series):
        x = s.x + i * width
        ax.bar(x, s.y, width, color=s.colour, label=s.label)
        errors = _errors(s)
        if errors is not None:
            keep, yerr = errors
            ax.errorbar(x[keep], s.y[keep], yerr=yerr, fmt="none", ecolor="black", capsize=3)
    offset = width * (len(panel.series) - 1) / 2
    ax.set_xticks(np.arange(len(panel.categories)) + offset, panel.categories)


def _trade_off(fig: Any, ax: Any, t: TradeOff) -> None:
    points = ax.scatter(
        t.memory_mib,
        t.tokens_per_s,
        c=t.excess_nats,
        cmap=COLOUR_MAP,
        vmin=t.colour_range[0],
        vmax=t.colour_range[1],
        s=36,
        edgecolors="0.3",
        linewidths=0.5,
        zorder=3,
    )
    front = t.front
    ax.plot(
        t.memory_mib[front],
        t.tokens_per_s[front],
        color="black",
        linewidth=1.0,
        marker="o",
        markerfacecolor="none",
        markersize=10,
        label="Pareto front (labelled)",
        zorder=2,
    )
    x_lo, x_hi = float(np.min(t.memory_mib)), float(np.max(t.memory_mib))
    for k, i in enumerate(front):
        # labels of the right-hand points go to their left, so they stay inside the axes; above
        # and below in turn, so neighbours on the front do not write over each other
        left = t.memory_mib[i] > x_lo + 0.6 * (x_hi - x_lo)
        ax.annotate(
            t.labels[i],
            (t.memory_mib[i], t.tokens_per_s[i]),
            xytext=(-6 if left else 6, 5 if k % 2 == 0 else -11),
            textcoords="offset points",
            ha="right" if left else "left",
            fontsize=7,
        )
    ax.margins(x=0.08, y=0.12)
    scale = fig.colorbar(points, ax=ax, cax=ax.inset_axes((1.02, 0.0, 0.025, 1.0)))
    scale.set_label(t.colour_label, fontsize=8)
    scale.formatter.set_useOffset(False)  # absolute nats, never "1e-5 + 3.7563"
    scale.update_ticks()
    ax.set_xlabel(t.x_label)
    ax.set_ylabel(t.y_label)
    ax.legend(**{**LEGEND, "bbox_to_anchor": (1.2, 1.0)})
