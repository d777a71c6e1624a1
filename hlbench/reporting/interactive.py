"""The HTML report's interactive figures: plotly, from the data of hlbench.reporting.plotdata /
plotseries, one figure per panel (workload).

Hovering a point shows its cell and figures (the series' hover text); clicking a legend entry
toggles its series. Legends sit right of the plot area (the trade-off's above it, its colour scale
on the right), never over the data. Values go in as plain lists (None for a gap) so that the same
data gives the same page bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hlbench.errors import UsageError
from hlbench.reporting.plotdata import Panel, Plot, Series, palette
from hlbench.reporting.plotseries import TradeOff

INSTALL_HINT = "the HTML report needs plotly: pip install 'hlbench[html]'"
HEIGHT_PX = 420
LEGEND_ROW_PX = 24
HOVER = "%{hovertext}<extra></extra>"  # the text alone, no trace-name box


def graph_objects() -> Any:
    """plotly.graph_objects, or a one-line UsageError naming the extra to install."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return go


def values(a: Any) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]


def _layout(title: str, x_label: str, y_label: str) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 15}},
        "xaxis": {"title": {"text": x_label}},
        "yaxis": {"title": {"text": y_label}},
        "height": HEIGHT_PX,
        "template": "plotly_white",
        "hovermode": "closest",
        "showlegend": True,  # even for one series: the legend names it and toggles it
        "legend": {
            "x": 1.02,
            "xanchor": "left",
            "y": 1.0,
            "yanchor": "top",
            "font": {"size": 11},
            "tracegroupgap": 2,
        },
        "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
    }


def _error_y(s: Series) -> dict[str, Any] | None:
    if not s.has_errors():
        return None
    assert s.y_lo is not None and s.y_hi is not None
    above, below = np.clip(s.y_hi - s.y, 0.0, None), np.clip(s.y - s.y_lo, 0.0, None)
    return {"type": "data", "symmetric": False, "array": values(above), "arrayminus": values(below)}


def figures(plot: Plot) -> list[Any]:
    """One plotly figure per panel of the plot."""
    return [trade_off(p) if isinstance(p, TradeOff) else panel_figure(p) for p in plot.panels]


def panel_figure(panel: Panel) -> Any:
    go = graph_objects()
    fig = go.Figure(layout=_layout(panel.title, panel.x_label, panel.y_label))
    # tall enough for every legend entry (series, zero line, shading) without a scroll bar
    entries = sum(s.legend for s in panel.series) + bool(panel.zero_line) + bool(panel.shades)
    fig.update_layout(height=max(HEIGHT_PX, 140 + LEGEND_ROW_PX * entries))
    if panel.kind == "bar":
        for s in panel.series:
            fig.add_trace(
                go.Bar(
                    x=panel.categories,
                    y=values(s.y),
                    name=s.label,
                    marker={"color": s.colour},
                    error_y=_error_y(s),
                    hovertext=s.hover,
                    hovertemplate=HOVER,
                )
            )
        fig.update_layout(barmode="group")
    else:
        for s in panel.series:
            _add_line(fig, go, panel, s)
    if panel.zero_line:
        xs = np.concatenate([s.x for s in panel.series]) if panel.series else np.zeros(1)
        fig.add_trace(
            go.Scatter(
                x=[float(np.nanmin(xs)), float(np.nanmax(xs))],
                y=[0.0, 0.0],
                mode="lines",
                name=panel.zero_line,
                line={"color": "black", "width": 1},
                hoverinfo="skip",
            )
        )
    if panel.h_line is not None:
        _add_h_line(fig, go, panel)
    for i, (lo, hi) in enumerate(panel.shades):
        fig.add_shape(
            type="rect",
            xref="x",
            yref="paper",
            x0=lo,
            x1=hi,
            y0=0,
            y1=1,
            fillcolor="lightgrey",
            opacity=0.35,
            line={"width": 0},
            layer="below",
            name=panel.shade_label,
            legendgroup="shades",
            showlegend=i == 0,
        )
    if panel.x_log2:
        ticks = sorted({float(x) for s in panel.series for x in s.x})
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    if panel.y_log:
        fig.update_yaxes(type="log")
    return fig


def _add_h_line(fig: Any, go: Any, panel: Panel) -> None:
    assert panel.h_line is not None
    y, label = panel.h_line
    xs = np.concatenate([s.x for s in panel.series]) if panel.series else np.zeros(1)
    fig.add_trace(
        go.Scatter(
            x=[float(np.nanmin(xs)), float(np.nanmax(xs))],
            y=[y, y],
            mode="lines",
            name=label,
            line={"color": "black", "width": 1, "dash": "dash"},
            hoverinfo="skip",
        )
    )


def _add_line(fig: Any, go: Any, panel: Panel, s: Series) -> None:
    scatter = panel.kind == "scatter"
    mode = "markers" if scatter else ("lines+markers" if len(s.x) < 12 or panel.thin else "lines")
    fig.add_trace(
        go.Scatter(
            x=values(s.x),
            y=values(s.y),
            mode=mode,
            name=s.label,
            legendgroup=s.label,  # a cell's seeds share one entry: it toggles them all
            **({} if s.legend else {"showlegend": False}),
            line={"color": s.colour, "width": 0.8 if panel.thin else 1.2},
            marker={"color": s.colour, "size": 8 if scatter else (3 if panel.thin else 5)},
            error_y=_error_y(s),
            hovertext=s.hover,
            hovertemplate=HOVER,
        )
    )
    if s.bold is not None and s.bold.any():
        # the same series, heavier where the cell was in a measured window; toggles with it
        fig.add_trace(
            go.Scatter(
                x=values(s.x),
                y=[float(y) if b else None for y, b in zip(s.y, s.bold)],
                mode="lines",
                legendgroup=s.label,
                showlegend=False,
                line={"color": s.colour, "width": 3},
                hoverinfo="skip",
            )
        )


def trade_off(t: TradeOff) -> Any:
    go = graph_objects()
    fig = go.Figure(layout=_layout(t.title, t.x_label, t.y_label))
    fig.add_trace(
        go.Scatter(
            x=values(t.memory_mib),
            y=values(t.tokens_per_s),
            mode="markers",
            name=_cells_name(t),
            marker={
                "color": values(t.excess_nats),
                "colorscale": "Viridis",
                "cmin": t.colour_range[0],
                "cmax": t.colour_range[1],
                "size": 11,
                "line": {"color": "#444", "width": 0.5},
                "colorbar": {"title": {"text": t.colour_label, "side": "right"}},
                "showscale": True,
            },
            hovertext=t.hover,
            hovertemplate=HOVER,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=values(t.memory_mib[t.front]),
            y=values(t.tokens_per_s[t.front]),
            mode="lines+text",
            name="Pareto front",
            text=[t.labels[i] for i in t.front],
            textposition=_label_positions(t),
            textfont={"size": 10},
            line={"color": "black", "width": 1.2},
            hovertext=[t.hover[i] for i in t.front],
            hovertemplate=HOVER,
        )
    )
    fig.update_layout(legend={"orientation": "h", "x": 0.0, "y": 1.02, "yanchor": "bottom"})
    fig.update_layout(margin={"t": 90})
    return fig


def _cells_name(t: TradeOff) -> str:
    default = TradeOff.__dataclass_fields__["colour_label"].default
    return (
        "cells (colour: excess loss)"
        if t.colour_label == default
        else (f"cells (colour: {t.colour_label})")
    )


def _label_positions(t: TradeOff) -> list[str]:
    """Above and below in turn (neighbours on the front), left of the right-hand points (so the
    labels stay inside the plot)."""
    lo, hi = float(np.min(t.memory_mib)), float(np.max(t.memory_mib))
    return [
        ("top " if k % 2 == 0 else "bottom ")
        + ("left" if t.memory_mib[i] > lo + 0.6 * (hi - lo) else "right")
        for k, i in enumerate(t.front)
    ]


def phase_shares(cells: Any, phases: list[str]) -> Any:
    """The profiling pass's phase shares: one horizontal stacked bar per profiled cell."""
    go = graph_objects()
    labels = list(cells["cell_id"])
    fig = go.Figure(layout=_layout("where the step time goes (profiling pass)", "share", ""))
    for phase, colour in zip(phases, palette(len(phases))):
        shares = cells[f"phase_{phase}_share"].fillna(0.0).tolist()
        fig.add_trace(
            go.Bar(
                y=labels,
                x=values(shares),
                orientation="h",
                name=phase,
                marker={"color": colour},
                hovertext=[
                    f"{c}: {phase} {v * 100:.1f}% of the step" for c, v in zip(labels, shares)
                ],
                hovertemplate=HOVER,
            )
        )
    fig.update_layout(
        barmode="stack",
        height=max(HEIGHT_PX, 140 + 28 * len(labels)),
        yaxis={"autorange": "reversed"},
        margin={"l": 260},
        xaxis={"tickformat": ".0%"},
    )
    return fig
