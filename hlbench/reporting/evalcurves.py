"""Eval-loss curves of time-to-target records: the held-out loss at each eval against training time
and against tokens, one panel per (workload, target). Data only; hlbench.reporting.plots and
.interactive draw it.

With a floor (a `target_excess_nats` target) the y axis is the excess over the corpus's entropy
floor on a log scale, where the approach to a small target stays readable; without one (a byte
corpus, `target_eval_loss`) it is the eval loss itself on a linear scale. The target is a dashed
line either way.

One thin line per seed, in its cell's colour, rather than a median per eval point: every seed
stops at its first eval at the target, so the seeds of a cell end at different points. A median
per point would be taken over fewer and fewer seeds, the slow ones, and against time the seeds'
eval points do not line up at all; a line per seed shows the spread and each seed's stop as they
were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hlbench.records.quality import parse_target_label
from hlbench.reporting import formatting as fmt
from hlbench.reporting.cells import BASELINE_AXES
from hlbench.reporting.plotdata import FLOAT, MAX_SERIES, Panel, Plot, Series, palette, short_id

# (key, x column of the curve, x label, how a point's x reads in the hover text)
AXES = (
    ("eval-curve-time", "train_time_s", "training time (s; evals excluded)", "{:.3g} s"),
    ("eval-curve-tokens", "tokens", "tokens trained", "{:,.0f} tokens"),
)
TITLES = {
    "eval-curve-time": "Eval loss against training time",
    "eval-curve-tokens": "Eval loss against tokens",
}
NOTE = (
    "One thin line per seed in its cell's colour (the legend names the cell once); each seed "
    "stops at its first eval at the target (dashed). With a floor: eval loss minus the corpus's "
    "entropy floor on a log axis (an eval at or below the floor, possible on a finite held-out "
    "set, has no place on it and is left out); without one: the eval loss itself."
)


def _curves(df: pd.DataFrame) -> pd.DataFrame:
    """The ok time-to-target rows with an eval curve, in a fixed order (cell, then seed)."""
    if "eval_curve" not in df or "target" not in df or df.empty:
        return df.iloc[0:0]
    has_curve = df["eval_curve"].map(lambda c: isinstance(c, dict) and len(c.get("step") or []) > 0)
    rows = df[df["ok"].fillna(False).astype(bool) & df["target"].notna() & has_curve]
    return rows.assign(_seed=rows["train_seed"].fillna(-1)).sort_values(
        ["workload", "target", "cell_id", "cell_hash", "_seed", "repeat"], kind="stable"
    )


def eval_curve_plots(df: pd.DataFrame) -> list[Plot]:
    """The two eval-curve plots (against time, against tokens); none without curves."""
    rows = _curves(df)
    if rows.empty:
        return []
    groups = [(key, g) for key, g in rows.groupby(["workload", "target"], sort=True)]
    plots = []
    for key, x_column, x_label, x_text in AXES:
        panels = [_panel(str(w), str(t), g, x_column, x_label, x_text) for (w, t), g in groups]
        panels = [p for p in panels if p is not None]
        if panels:
            plots.append(Plot(key, panels, NOTE))
    return plots


def _panel(
    workload: str, target: str, rows: pd.DataFrame, x_column: str, x_label: str, x_text: str
) -> Panel | None:
    parsed = parse_target_label(target)
    if parsed is None:
        return None
    kind, value = parsed
    floor_based = kind == "excess_nats"
    # the baseline first (the first colour), then the others by cell id
    first = rows.drop_duplicates("cell_hash")
    baseline = [all(r.get(k) == v for k, v in BASELINE_AXES.items()) for _, r in first.iterrows()]
    order = sorted(
        zip(baseline, first["cell_id"], first["cell_hash"]), key=lambda t: (not t[0], t[1])
    )
    hashes = [h for _, _, h in order][:MAX_SERIES]
    colours = dict(zip(hashes, palette(len(hashes))))
    series = []
    for cell_hash in hashes:
        for i, (_, r) in enumerate(rows[rows["cell_hash"] == cell_hash].iterrows()):
            series.append(
                _series(r, workload, x_column, x_text, floor_based, colours[cell_hash], i)
            )
    y_label = "eval loss − entropy floor (nats, log)" if floor_based else "eval loss (nats)"
    what = "excess eval loss over the floor" if floor_based else "eval loss"
    return Panel(
        f"{workload}: {what} ({target})",
        x_label,
        y_label,
        series,
        y_log=floor_based,
        thin=True,
        h_line=(value, f"target: {target}"),
    )


def _series(
    r: Any, workload: str, x_column: str, x_text: str, floor_based: bool, colour: str, i: int
) -> Series:
    curve = r["eval_curve"]
    x, y = _column(curve, x_column), _column(curve, "excess_nats" if floor_based else "eval_loss")
    n = min(len(x), len(y))  # columns of one curve have one length; a damaged record may not
    x, y = x[:n], y[:n]
    if floor_based:
        y = np.where(y > 0, y, np.nan)  # a log axis has no place for 0 or below
    label = short_id(str(r["cell_id"]), workload)
    seed = "—" if fmt.missing(r.get("train_seed")) else str(int(r["train_seed"]))
    steps = _column(curve, "step")
    what = "excess" if floor_based else "eval loss"
    hover = [
        f"{r['cell_id']} seed {seed}, step {fmt.num(k)}: {x_text.format(a)}, {what} {fmt.nats(b)}"
        for k, a, b in zip(steps, x, y)
    ]
    return Series(label, x, y, hover, colour, legend=i == 0)


def _column(curve: dict[str, Any], name: str) -> np.ndarray:
    values = curve.get(name) or []
    return np.array([np.nan if v is None else float(v) for v in values], dtype=FLOAT)
