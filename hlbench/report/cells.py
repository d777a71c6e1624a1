"""Per-cell statistics: the (cell, repeat) rows of hlbench.results pooled into one row per cell.

Only `ok` repeats enter the numbers; a cell whose repeats all failed keeps a row (its statuses and
reasons) with null statistics. Records of the same cell from several runs (same content hash) pool as
repeats. Rows come back in one fixed order (see `sort_key`) so that everything built on them is
deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hlbench.axes import PRECISIONS, PRUNING_METHODS
from hlbench.report import stats

CORE_AXES = ("precision", "accumulation", "pruning")
BASELINE_AXES = {"precision": "fp32", "accumulation": 1, "pruning": "none"}

# Stability thresholds: a window CV at or above this, or fewer measured steps than this, gets a warning.
UNSTABLE_CV = 0.10
MIN_STEPS = 20


def variant_axes(df: pd.DataFrame) -> list[str]:
    """Axes other than the core three (compile, augmentation, later ones) that vary or are set."""
    from hlbench.results import BASE_COLUMNS

    known = [a for a in ("compile", "augmentation") if a in df and df[a].notna().any()]
    extra = [c for c in df.columns if c not in BASE_COLUMNS and c not in SUMMARY_COLUMNS]
    return known + sorted(extra)


# Columns `summarize` adds (so that variant_axes works on its output as on the raw rows).
SUMMARY_COLUMNS = frozenset({
    "n_records", "n_ok", "reasons", "skipped", "step_time_q25_s", "step_time_q75_s", "window_cv",
    "peak_mem_each_bytes", "host_rss_each_bytes", "excess_each_nats", "boot_median_step_s",
    "loss_curve_nats", "telemetry",
})


def _rank(values: tuple[str, ...], value: Any) -> tuple[int, str]:
    return (values.index(value), "") if value in values else (len(values), str(value))


def sort_key(row: Any, variants: list[str]) -> tuple:
    return (
        str(row["workload"]), str(row["backend"]),
        *(str(row[v]) for v in variants),
        _rank(PRUNING_METHODS, row["pruning"]),
        _rank(PRECISIONS, row["precision"]),
        int(row["accumulation"]) if row["accumulation"] is not None and row["accumulation"] == row["accumulation"] else 0,
        str(row["cell_id"]),
    )


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell hash: identity, outcome counts and statistics over its ok repeats."""
    variants = variant_axes(df)
    identity = ["cell_hash", "cell_id", "workload", "model", "backend", "device", "device_name",
                "tokens_per_step", *CORE_AXES, *variants]
    rows = []
    for cell_hash, group in df.groupby("cell_hash", sort=True):
        rows.append(_summarize_cell(cell_hash, group, identity))
    cells = pd.DataFrame(rows)
    order = sorted(range(len(cells)), key=lambda i: sort_key(cells.iloc[i], variants))
    return cells.iloc[order].reset_index(drop=True)


def _median(series: pd.Series) -> float | None:
    values = series.dropna()
    return float(values.median()) if len(values) else None


def _summarize_cell(cell_hash: str, group: pd.DataFrame, identity: list[str]) -> dict[str, Any]:
    # pool in (run, repeat) order whatever the file order, so the seeded bootstrap sees the same samples
    group = group.sort_values(["run_id", "repeat"], kind="stable")
    first = group.iloc[0]
    ok = group[group["ok"]]
    statuses = group["status"].value_counts()
    row: dict[str, Any] = {k: first[k] for k in identity}
    row.update({
        "n_records": len(group),
        "n_ok": len(ok),
        "status": "ok" if len(ok) == len(group) else ", ".join(
            f"{s} {n}/{len(group)}" if len(statuses) > 1 or n > 1 else s for s, n in sorted(statuses.items())),
        "failed": bool(group["failed"].any()),
        "skipped": bool((group["status"] == "skipped").all()),
        "reasons": "; ".join(sorted({str(r) for r in group.loc[~group["ok"], "reason"].dropna()})),
    })
    steps = np.concatenate(list(ok["step_times_s"])) if len(ok) else np.empty(0)
    windows = np.concatenate(list(ok["window_mean_step_time_s"])) if len(ok) else np.empty(0)
    q25, q50, q75 = np.percentile(steps, [25, 50, 75]) if len(steps) else (None, None, None)
    mems = ok["peak_mem_bytes"].dropna()
    sources = sorted(set(ok["peak_mem_source"].dropna()))
    excess = ok["excess_eval_loss_nats"].dropna()
    curve = next((c for c in ok.sort_values("repeat")["train_loss_per_step_nats"] if len(c)), np.empty(0))
    row.update({
        "tokens_per_s": _median(ok["tokens_per_s"]),
        "step_time_median_s": None if q50 is None else float(q50),
        "step_time_q25_s": None if q25 is None else float(q25),
        "step_time_q75_s": None if q75 is None else float(q75),
        "window_cv": float(windows.std(ddof=1) / windows.mean()) if len(windows) >= 2 else None,
        "steps_measured": int(len(steps)) if len(ok) else None,
        "budget_hit": bool(ok["budget_hit"].fillna(False).astype(bool).any()),
        "throttled": bool(ok["throttled"].fillna(False).astype(bool).any()),
        "peak_mem_bytes": float(mems.median()) if len(mems) else None,
        "peak_mem_source": sources[0] if len(sources) == 1 else ("mixed" if sources else None),
        "peak_mem_each_bytes": mems.to_numpy(dtype=float),
        "host_peak_rss_bytes": _median(ok["host_peak_rss_bytes"]),
        "host_rss_each_bytes": ok["host_peak_rss_bytes"].dropna().to_numpy(dtype=float),
        "excess_eval_loss_nats": float(excess.median()) if len(excess) else None,
        "excess_each_nats": excess.to_numpy(dtype=float),
        "energy_per_token_j": _median(ok["energy_per_token_j"]),
        "mfu": _median(ok["mfu"]),
        "sparsity": _median(ok["sparsity"]),
        "step_times_s": steps,
        "boot_median_step_s": stats.bootstrap_medians(steps, seed=cell_hash),
        "loss_curve_nats": curve,
        "telemetry": [(r, t, m) for r, t, m in zip(ok["repeat"], ok["telemetry_mem_t_s"], ok["telemetry_mem_bytes"]) if len(t)],
    })
    return row


def is_baseline(row: Any) -> bool:
    return all(row[k] == v for k, v in BASELINE_AXES.items())


def stability_warnings(cells: pd.DataFrame) -> list[tuple[str, str]]:
    """(cell id, warning) for every ok cell whose numbers deserve less trust, in cell order."""
    out = []
    for _, c in cells[cells["n_ok"] > 0].iterrows():
        if c["window_cv"] is not None and c["window_cv"] == c["window_cv"] and c["window_cv"] >= UNSTABLE_CV:
            out.append((c["cell_id"], f"unstable: window step-time CV {c['window_cv'] * 100:.1f}% ≥ {UNSTABLE_CV * 100:.0f}%"))
        if c["steps_measured"] is not None and c["steps_measured"] < MIN_STEPS:
            out.append((c["cell_id"], f"too few steps: {int(c['steps_measured'])} measured < {MIN_STEPS}"))
        if c["budget_hit"]:
            out.append((c["cell_id"], "time budget hit: windows stopped early"))
        if c["throttled"]:
            out.append((c["cell_id"], "throttling seen by telemetry during the measured windows"))
    return out
