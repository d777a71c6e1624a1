"""The report's profiling section: where step time goes, per phase and per operator category.

Built from the row-level DataFrame (records with a `profile` section, from `hlbench run --profile`):
phase shares per cell, category shares averaged per backend and precision, and a stacked-bar plot of
the phase shares. Absent entirely when no record was profiled, so reports of unprofiled runs do not
change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hlbench.profiling.categories import CATEGORIES
from hlbench.profiling.phases import PHASES
from hlbench.reporting import formatting as fmt

PHASE_COLUMNS = [f"phase_{p}_share" for p in PHASES]
CATEGORY_COLUMNS = [f"category_{c}_share" for c in CATEGORIES]


def profiled(df: pd.DataFrame) -> pd.DataFrame:
    """Ok rows with a profile, one per cell (mean over its profiled repeats), in cell id order."""
    if "profile_step_s" not in df.columns:
        return df.iloc[0:0]
    rows = df[df["ok"] & df["profile_step_s"].notna()]
    if rows.empty:
        return rows
    keys = ["cell_id", "workload", "backend", "precision"]
    shares = [c for c in PHASE_COLUMNS + CATEGORY_COLUMNS + ["profile_step_s"] if c in rows.columns]
    return rows.groupby(keys, sort=True)[shares].mean().reset_index()


def phase_rows(cells: pd.DataFrame) -> tuple[list[list[Any]], list[str]]:
    phases = [
        p for p, c in zip(PHASES, PHASE_COLUMNS) if c in cells.columns and cells[c].notna().any()
    ]
    rows = [
        [
            c["cell_id"],
            fmt.ms(c["profile_step_s"]),
            *(fmt.percent(c[f"phase_{p}_share"]) for p in phases),
        ]
        for _, c in cells.iterrows()
    ]
    return rows, ["cell", "step (ms)", *phases]


def category_rows(cells: pd.DataFrame) -> tuple[list[list[Any]], list[str]]:
    present = [
        c
        for c in CATEGORIES
        if f"category_{c}_share" in cells.columns and cells[f"category_{c}_share"].notna().any()
    ]
    if not present:
        return [], []
    by = cells.groupby(["backend", "precision"], sort=True)[
        [f"category_{c}_share" for c in present]
    ].mean()
    rows = [
        [fmt.backend_name(backend), precision, *(fmt.percent(v) for v in values)]
        for (backend, precision), values in zip(by.index, by.to_numpy())
    ]
    return rows, ["backend", "precision", *present]


def stacked_phases(cells: pd.DataFrame, out_dir: Path) -> str | None:
    """One horizontal stacked bar of phase shares per profiled cell."""
    if cells.empty:
        return None
    from hlbench.reporting.plots import PNG_METADATA, pyplot

    plt = pyplot()
    phases = [
        p
        for p in PHASES
        if f"phase_{p}_share" in cells.columns and cells[f"phase_{p}_share"].notna().any()
    ]
    height_in = 1.7 + 0.35 * len(cells)  # room below the bars for the legend
    fig, ax = plt.subplots(figsize=(8.5, height_in))
    left = [0.0] * len(cells)
    labels = list(cells["cell_id"])
    for phase in phases:
        values = cells[f"phase_{phase}_share"].fillna(0.0).tolist()
        ax.barh(labels, values, left=left, label=phase)
        left = [a + b for a, b in zip(left, values)]
    ax.set_xlabel("share of the step")
    ax.invert_yaxis()
    fig.legend(fontsize=7, ncol=4, loc="lower center")
    ax.set_title("where the step time goes (profiling pass)", fontsize=10)
    fig.subplots_adjust(left=0.42, right=0.98, bottom=1.05 / height_in, top=1 - 0.35 / height_in)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "profile-phases.png"
    fig.savefig(path, dpi=80, metadata=PNG_METADATA)
    plt.close(fig)
    return path.name
