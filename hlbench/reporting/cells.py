"""Per-cell statistics: the (cell, repeat) rows of hlbench.results pooled into one row per cell.

Only `ok` repeats enter the numbers; a cell whose repeats all failed keeps a row (its statuses and
reasons) with null statistics. Records of the same cell from several runs (same content hash) pool
as repeats. Rows come back in one fixed order (see `sort_key`) so that everything built on them is
deterministic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hlbench.axes import PRECISIONS, PRUNING_METHODS
from hlbench.reporting import stats

CORE_AXES = ("precision", "accumulation", "pruning")
BASELINE_AXES = {"precision": "fp32", "accumulation": 1, "pruning": "none"}

# Stability thresholds: a window CV at or above this, or fewer measured steps than this, gets a
# warning.
UNSTABLE_CV = 0.10
MIN_STEPS = 20


def variant_axes(df: pd.DataFrame) -> list[str]:
    """Axes other than the core three (compile, augmentation, later ones) that vary or are set."""
    from hlbench.results import BASE_COLUMNS

    known = [a for a in ("compile", "augmentation") if a in df and df[a].notna().any()]
    extra = [c for c in df.columns if c not in BASE_COLUMNS and c not in SUMMARY_COLUMNS]
    return known + sorted(extra)


# Columns `summarize` adds (so that variant_axes works on its output as on the raw rows).
SUMMARY_COLUMNS = frozenset(
    {
        "n_records",
        "n_ok",
        "reasons",
        "skipped",
        "step_time_q25_s",
        "step_time_q75_s",
        "window_cv",
        "peak_mem_each_bytes",
        "host_rss_each_bytes",
        "excess_each_nats",
        "boot_median_step_s",
        "loss_curve_nats",
        "telemetry",
    }
)


def _rank(values: tuple[str, ...], value: Any) -> tuple[int, str]:
    return (values.index(value), "") if value in values else (len(values), str(value))


def sort_key(row: Any, variants: list[str]) -> tuple:
    return (
        str(row["workload"]),
        str(row["backend"]),
        *(str(row[v]) for v in variants),
        _rank(PRUNING_METHODS, row["pruning"]),
        _rank(PRECISIONS, row["precision"]),
        int(row["accumulation"])
        if row["accumulation"] is not None and row["accumulation"] == row["accumulation"]
        else 0,
        str(row["cell_id"]),
    )


# Identity columns of a cell (besides its variant axes), taken from its first ok record.
IDENTITY_COLUMNS = (
    "cell_hash",
    "cell_id",
    "workload",
    "model",
    "backend",
    "device",
    "device_name",
    "tokens_per_step",
    *CORE_AXES,
)
# Medians over a cell's ok repeats.
MEDIAN_COLUMNS = (
    "tokens_per_s",
    "peak_mem_bytes",
    "host_peak_rss_bytes",
    "excess_eval_loss_nats",
    "energy_per_token_j",
    "mfu",
    "mfu_dtype",
    "sparsity",
)
# Pooled samples (NumPy arrays; empty for a cell without an ok repeat).
ARRAY_COLUMNS = (
    "peak_mem_each_bytes",
    "host_rss_each_bytes",
    "excess_each_nats",
    "step_times_s",
    "boot_median_step_s",
    "loss_curve_nats",
)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell hash: identity, outcome counts and statistics over its ok repeats.

    Scalar statistics are pandas group aggregations; raw samples are pooled with NumPy over
    positional indices, so that 10,000 records take well under a second.
    """
    variants = variant_axes(df)
    # (run, repeat) order whatever the file order: pooled samples and "first ok repeat" are then
    # stable
    df = df.sort_values(["cell_hash", "run_id", "repeat"], kind="stable").reset_index(drop=True)
    ok_df = df[df["ok"]]
    # identity from the first ok record (a skipped record's device is only the suite's request)
    first = pd.concat([ok_df, df]).drop_duplicates("cell_hash")
    cells = first[[*IDENTITY_COLUMNS, *variants]].set_index("cell_hash").sort_index()
    _outcomes(cells, df, ok_df)
    _ok_statistics(cells, ok_df)
    cells = cells.join(_pooled_samples(ok_df))
    for column in ARRAY_COLUMNS:
        cells[column] = [
            v if isinstance(v, np.ndarray) else np.empty(0)
            for v in cells.get(column, [None] * len(cells))
        ]
    cells["telemetry"] = [
        v if isinstance(v, list) else [] for v in cells.get("telemetry", [None] * len(cells))
    ]
    cells = cells.astype({"n_ok": int}).reset_index()
    cells = cells.astype(object).where(cells.notna(), None)  # None, not NaN, for "no number"
    records = cells.to_dict("records")  # plain dicts: .iloc per row is slow with thousands of cells
    order = sorted(range(len(cells)), key=lambda i: sort_key(records[i], variants))
    return cells.iloc[order].reset_index(drop=True)


def _outcomes(cells: pd.DataFrame, df: pd.DataFrame, ok_df: pd.DataFrame) -> None:
    """Record counts, status text, failed/skipped flags and the reasons of the records not ok."""
    everything = df.groupby("cell_hash")
    cells["n_records"] = everything.size()
    cells["n_ok"] = ok_df.groupby("cell_hash").size().reindex(cells.index, fill_value=0)
    cells["status"] = _status_text(df, cells)
    cells["failed"] = everything["failed"].any()
    cells["skipped"] = everything["status"].agg(lambda s: bool((s == "skipped").all()))
    reasons = (
        df[~df["ok"] & df["reason"].notna()]
        .groupby("cell_hash")["reason"]
        .agg(lambda s: "; ".join(sorted(set(map(str, s)))))
    )
    cells["reasons"] = reasons.reindex(cells.index).fillna("")


def _ok_statistics(cells: pd.DataFrame, ok_df: pd.DataFrame) -> None:
    """Medians, any-of flags and the memory figure's source over the ok repeats."""
    ok = ok_df.groupby("cell_hash")
    for column in MEDIAN_COLUMNS:
        cells[column] = ok[column].median().reindex(cells.index)
    for column in ("budget_hit", "throttled"):
        flags = ok_df[column].fillna(False).astype(bool).groupby(ok_df["cell_hash"]).any()
        cells[column] = flags.reindex(cells.index, fill_value=False)
    sources = (
        ok_df[ok_df["peak_mem_source"].notna()]
        .groupby("cell_hash")["peak_mem_source"]
        .agg(lambda s: s.iloc[0] if s.nunique() == 1 else "mixed")
    )
    cells["peak_mem_source"] = sources.reindex(cells.index)


def _pooled_samples(ok_df: pd.DataFrame) -> pd.DataFrame:
    if not len(ok_df):
        return pd.DataFrame(index=pd.Index([], name="cell_hash"))
    groups = ok_df.groupby("cell_hash").indices.items()
    return pd.DataFrame([_pooled(str(h), ok_df, idx) for h, idx in groups]).set_index("cell_hash")


def _status_text(df: pd.DataFrame, cells: pd.DataFrame) -> pd.Series:
    """ "ok" when every record is ok, else the counts: "error 1/2, ok 1/2", "oom", "skipped"."""
    counts: dict[str, dict[str, int]] = {}
    for cell_hash, status in zip(df["cell_hash"], df["status"]):
        counts.setdefault(cell_hash, {}).setdefault(str(status), 0)
        counts[cell_hash][str(status)] += 1
    text = {}
    for cell_hash, c in counts.items():
        total = sum(c.values())
        if list(c) == ["ok"]:
            text[cell_hash] = "ok"
        elif len(c) == 1 and total == 1:
            text[cell_hash] = next(iter(c))
        else:
            text[cell_hash] = ", ".join(f"{s} {n}/{total}" for s, n in sorted(c.items()))
    return pd.Series(text).reindex(cells.index)


def _cv(windows: np.ndarray) -> float | None:
    """Coefficient of variation of the window means; None for fewer than 2 windows, or where
    hostile values (near the float maximum) overflow it."""
    if len(windows) < 2:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        cv = float(windows.std(ddof=1) / windows.mean())
    return cv if math.isfinite(cv) else None


def _pooled(cell_hash: str, ok: pd.DataFrame, idx: np.ndarray) -> dict[str, Any]:
    """Raw samples of one cell's ok repeats, pooled, and the statistics that need them."""
    rows = ok.iloc[idx]
    steps = np.concatenate(list(rows["step_times_s"]))
    windows = np.concatenate(list(rows["window_mean_step_time_s"]))
    q25, q50, q75 = np.percentile(steps, [25, 50, 75]) if len(steps) else (None, None, None)
    curve = next((c for c in rows["train_loss_per_step_nats"] if len(c)), np.empty(0))
    return {
        "cell_hash": cell_hash,
        "step_time_median_s": None if q50 is None else float(q50),
        "step_time_q25_s": None if q25 is None else float(q25),
        "step_time_q75_s": None if q75 is None else float(q75),
        "window_cv": _cv(windows),
        "steps_measured": int(len(steps)),
        "peak_mem_each_bytes": rows["peak_mem_bytes"].dropna().to_numpy(dtype=float),
        "host_rss_each_bytes": rows["host_peak_rss_bytes"].dropna().to_numpy(dtype=float),
        "excess_each_nats": rows["excess_eval_loss_nats"].dropna().to_numpy(dtype=float),
        "step_times_s": steps,
        "boot_median_step_s": stats.bootstrap_medians(steps, seed=cell_hash),
        "loss_curve_nats": curve,
        # (repeat, seconds from its first measured window, memory bytes, windows as [start, end])
        "telemetry": [
            (r, t, m, w)
            for r, t, m, w in zip(
                rows["repeat"],
                rows["telemetry_mem_t_s"],
                rows["telemetry_mem_bytes"],
                rows["telemetry_windows_s"],
            )
            if len(t)
        ],
    }


def is_baseline(row: Any) -> bool:
    return all(row[k] == v for k, v in BASELINE_AXES.items())


def stability_warnings(cells: pd.DataFrame) -> list[tuple[str, str]]:
    """(cell id, warning) for every ok cell whose numbers deserve less trust, in cell order."""
    out = []
    for _, c in cells[cells["n_ok"] > 0].iterrows():
        if (
            c["window_cv"] is not None
            and c["window_cv"] == c["window_cv"]
            and c["window_cv"] >= UNSTABLE_CV
        ):
            out.append(
                (
                    c["cell_id"],
                    f"unstable: window step-time CV {c['window_cv'] * 100:.1f}% ≥ "
                    f"{UNSTABLE_CV * 100:.0f}%",
                )
            )
        if c["steps_measured"] is not None and c["steps_measured"] < MIN_STEPS:
            out.append(
                (c["cell_id"], f"too few steps: {int(c['steps_measured'])} measured < {MIN_STEPS}")
            )
        if c["budget_hit"]:
            out.append((c["cell_id"], "time budget hit: windows stopped early"))
        if c["throttled"]:
            out.append((c["cell_id"], "throttling seen by telemetry during the measured windows"))
    return out
