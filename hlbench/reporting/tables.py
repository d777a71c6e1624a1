"""What `hlbench table` prints: the tidy rows, a pivot of one metric, or github-action-benchmark
JSON.

Pivots and gab-json aggregate only ok rows (median over repeats); the tidy rows keep every status.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from hlbench.errors import UsageError
from hlbench.reporting import formatting as fmt
from hlbench.results import RAW_COLUMNS

DEFAULT_METRIC = "tokens_per_s"
# The markdown view of the tidy rows (csv/json/parquet carry every scalar column).
MD_VIEW = [
    "cell_id",
    "repeat",
    "run_id",
    "status",
    "tokens_per_s",
    "step_time_median_s",
    "peak_mem_bytes",
    "peak_mem_source",
    "excess_eval_loss_nats",
    "reason",
]
# github-action-benchmark needs to know which way is better; these metrics are bigger-is-better.
BIGGER_IS_BETTER = {"tokens_per_s", "target_tokens_per_s", "mfu"}


def scalar_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in RAW_COLUMNS if c in df])


def metrics(df: pd.DataFrame) -> list[str]:
    numeric = scalar_frame(df).select_dtypes("number").columns
    return sorted(
        c
        for c in numeric
        if c not in ("repeat", "global_batch", "micro_batch", "seq_len", "accumulation")
    )


def check_metric(df: pd.DataFrame, metric: str) -> None:
    if metric not in metrics(df):
        raise UsageError(
            f"--metric {metric}: not a numeric column; one of {', '.join(metrics(df))}"
        )


def unit(metric: str) -> str:
    if metric in ("tokens_per_s", "target_tokens_per_s"):
        return "tokens/s"
    for suffix, name in (("_bytes", "bytes"), ("_nats", "nats"), ("_j", "J"), ("_s", "s")):
        if metric.endswith(suffix):
            return name
    return "ratio" if metric in ("mfu", "sparsity", "window_step_time_cv") else ""


def parse_pivot(spec: str, df: pd.DataFrame) -> tuple[list[str], list[str]]:
    rows_text, sep, cols_text = spec.partition(":")
    rows = [c for c in rows_text.split(",") if c]
    cols = [c for c in cols_text.split(",") if c]
    if not sep or not rows or not cols:
        raise UsageError(
            f"--pivot {spec}: expected ROWS:COLS, e.g. precision:accumulation or "
            "workload,backend:precision"
        )
    unknown = [c for c in rows + cols if c not in df.columns or c in RAW_COLUMNS]
    if unknown:
        raise UsageError(
            f"--pivot {spec}: unknown column(s) {', '.join(unknown)}; see `hlbench table --format "
            "csv` for the columns"
        )
    return rows, cols


def pivot(df: pd.DataFrame, rows: list[str], cols: list[str], metric: str) -> pd.DataFrame:
    ok = df[df["ok"] & df[metric].notna()]
    if ok.empty:
        raise UsageError(f"no ok rows with {metric} to pivot")
    table = ok.pivot_table(index=rows, columns=cols, values=metric, aggfunc="median", dropna=True)
    table.columns = [
        c if isinstance(c, str) else "/".join(map(str, c if isinstance(c, tuple) else (c,)))
        for c in table.columns
    ]
    return table.reset_index()


def to_markdown(frame: pd.DataFrame) -> str:
    from tabulate import tabulate

    def cell(v: Any) -> str:
        if fmt.missing(v):
            return fmt.MISSING
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v).replace("|", "\\|")

    body = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return (
        tabulate(
            body, headers=[str(c) for c in frame.columns], tablefmt="github", disable_numparse=True
        )
        + "\n"
    )


def gab_json(df: pd.DataFrame, metric: str) -> str:
    """github-action-benchmark entries (custom tools), one per cell with an ok record."""
    ok = df[df["ok"] & df[metric].notna()]
    entries = []
    for cell_id, group in sorted(ok.groupby("cell_id"), key=lambda kv: str(kv[0])):
        values = group[metric].astype(float)
        entry: dict[str, Any] = {
            "name": f"{cell_id} {metric}",
            "unit": unit(metric),
            "value": float(values.median()),
        }
        if len(values) >= 2:
            entry["range"] = f"± {float(values.std(ddof=1)):.6g}"
        memory = group["peak_mem_bytes"].dropna()
        extra = [
            f"{len(values)} repeat(s)",
            f"runs {', '.join(sorted(set(map(str, group['run_id']))))}",
        ]
        if len(memory):
            extra.append(
                f"peak memory {fmt.mib(memory.median())} "
                f"({fmt.memory_source(group['peak_mem_source'].iloc[0])})"
            )
        entry["extra"] = "; ".join(extra)
        entries.append(entry)
    if any(not math.isfinite(e["value"]) for e in entries):
        raise UsageError(f"{metric}: a value is not finite; github-action-benchmark needs numbers")
    return json.dumps(entries, indent=2, ensure_ascii=False) + "\n"
