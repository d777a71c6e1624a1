"""The report's quality sections: time to target over seeds, and training health.

Time to target (records of `mode: time_to_target`): per cell, over its ok repeats (with
`measurement.seeds`, one seed each), the share of seeds that reached the target, and medians with
a 95% bootstrap interval over seeds (hlbench.reporting.stats, seeded by the cell hash, so a report
is byte-identical on every build) of the time and tokens to target and of the final excess loss. A
seed that did not reach the target counts as +inf time (it would take longer than the budget): the
median is finite only when more than half of the seeds reached it, and an interval bound past the
budget reads "not reached". Each cell is set against its baseline twin (fp32, 1 accumulation step,
no pruning; the same workload, backend and other axes): the ratio of median times, with the
interval from paired bootstrap medians.

Training health (every mode): gradient norm before clipping, the share of clipped steps,
non-finite steps, fp16's skipped steps and loss spikes (hlbench.worker.health defines them).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hlbench.reporting import formatting as fmt
from hlbench.reporting.markdown import table
from hlbench.reporting.stats import INTERVAL, bootstrap_medians, ratio_interval

BASELINE = {"precision": "fp32", "accumulation": 1, "pruning": "none"}
TWIN_KEYS = ("workload", "backend", "compile", "augmentation", "hold", "target")
NOT_REACHED = "not reached"


def _median_interval(values: np.ndarray, key: str) -> tuple[float, float, float, np.ndarray]:
    """Median, 95% bootstrap interval and the bootstrap medians (NaN when there are no values)."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan, np.empty(0)
    draws = bootstrap_medians(values, key)
    lo, hi = np.percentile(draws, INTERVAL) if np.isfinite(draws).all() else _inf_percentiles(draws)
    return float(np.median(values)), float(lo), float(hi), draws


def _inf_percentiles(draws: np.ndarray) -> tuple[float, float]:
    # percentiles of a sample holding +inf, without NumPy's inf - inf interpolation warnings
    ordered = np.sort(draws)
    at = [min(int(p / 100 * len(ordered)), len(ordered) - 1) for p in INTERVAL]
    return float(ordered[at[0]]), float(ordered[at[1]])


def _seconds(x: float) -> str:
    if fmt.missing(x):
        return fmt.MISSING
    return NOT_REACHED if math.isinf(x) else f"{x:.3g} s"


def _tokens(x: float) -> str:
    if fmt.missing(x):
        return fmt.MISSING
    return NOT_REACHED if math.isinf(x) else fmt.num(x)


def _with_interval(med: float, lo: float, hi: float, show: Any) -> str:
    if fmt.missing(med):
        return fmt.MISSING
    return show(med) + ("" if fmt.missing(lo) else f" [{show(lo)}–{show(hi)}]")


def summarize_targets(df: pd.DataFrame) -> pd.DataFrame:
    """One row per time-to-target cell: seeds, share reached, medians and intervals."""
    if "target" not in df or df.empty:
        return pd.DataFrame()
    ok = df[df["ok"].fillna(False).astype(bool) & df["target"].notna()]
    rows = []
    for cell_hash, group in ok.groupby("cell_hash", sort=False):
        first = group.iloc[0]
        reached = group["reached"].fillna(False).astype(bool).to_numpy()
        ttt = np.where(reached, group["time_to_target_s"].astype(float), math.inf)
        tokens = np.where(reached, group["tokens_to_target"].astype(float), math.inf)
        final = group["final_excess_nats"].dropna().astype(float).to_numpy()
        t_med, t_lo, t_hi, t_draws = _median_interval(ttt, f"{cell_hash}")
        k_med, k_lo, k_hi, _ = _median_interval(tokens, f"{cell_hash}")
        f_med, f_lo, f_hi, _ = _median_interval(final, f"{cell_hash}")
        rows.append(
            {
                **{key: first.get(key) for key in ("cell_id", *TWIN_KEYS, *BASELINE)},
                "cell_hash": cell_hash,
                "seeds": sorted(int(s) for s in group["train_seed"].dropna()),
                "n": len(group),
                "n_reached": int(reached.sum()),
                "ttt": (t_med, t_lo, t_hi),
                "ttt_draws": t_draws,
                "tokens": (k_med, k_lo, k_hi),
                "final_excess": (f_med, f_lo, f_hi),
                "best_excess": float(group["best_excess_nats"].astype(float).median()),
                "eval_s": float(group["eval_s_total"].astype(float).median()),
            }
        )
    return pd.DataFrame(rows)


def _twin(row: pd.Series, cells: pd.DataFrame) -> pd.Series | None:
    """The cell's baseline twin (fp32, 1 step, no pruning, all else equal); None for a baseline."""
    if all(row.get(k) == v for k, v in BASELINE.items()):
        return None
    match = np.ones(len(cells), dtype=bool)
    for key in TWIN_KEYS:
        match &= (cells[key] == row.get(key)).to_numpy() | (
            cells[key].isna().to_numpy() & fmt.missing(row.get(key))
        )
    for key, value in BASELINE.items():
        match &= (cells[key] == value).to_numpy()
    found = cells[match]
    return found.iloc[0] if len(found) else None


def _vs_twin(row: pd.Series, twin: pd.Series | None) -> tuple[float, float, float]:
    """Ratio of median times to target, cell / twin, and its paired bootstrap interval."""
    if twin is None or not (math.isfinite(row["ttt"][0]) and math.isfinite(twin["ttt"][0])):
        return math.nan, math.nan, math.nan
    a, b = row["ttt_draws"], twin["ttt_draws"]
    finite = np.isfinite(a).all() and np.isfinite(b).all()
    lo, hi = ratio_interval(a, b) if finite else (None, None)
    value = row["ttt"][0] / twin["ttt"][0]
    return value, math.nan if lo is None else lo, math.nan if hi is None else hi


def time_to_target(df: pd.DataFrame) -> list[str]:
    """The time-to-target section; nothing for records without one."""
    cells = summarize_targets(df)
    if cells.empty:
        return []
    lines = [
        "## Time to target",
        "",
        "Per cell over its ok seeds: the share that reached the target, then medians with a 95% "
        "bootstrap interval over seeds. Time is training time only (warmup and windows, "
        "device-synced; the evals' own time is the last column); tokens are steps × global batch "
        f"× sequence length. A seed that missed the target counts as {NOT_REACHED} (beyond its "
        "budget). `× baseline`: median time against the fp32, 1-step, unpruned twin.",
        "",
    ]
    rows, sentences = [], []
    for _, row in cells.iterrows():
        ratio = _vs_twin(row, _twin(row, cells))
        rows.append(
            [
                row["cell_id"],
                row["target"],
                f"{row['n_reached']}/{row['n']}",
                _with_interval(*row["ttt"], _seconds),
                _with_interval(*row["tokens"], _tokens),
                _with_interval(*row["final_excess"], fmt.nats),
                fmt.nats(row["best_excess"]),
                _with_interval(*ratio, fmt.ratio),
                _seconds(row["eval_s"]),
            ]
        )
        if not math.isnan(ratio[0]):
            sentences.append(_sentence(row, ratio))
    headers = ["cell", "target", "reached", "time to target", "tokens to target"]
    headers += ["final excess (nats)", "best excess", "× baseline", "eval time"]
    lines += table(rows, headers)
    return lines + [f"- {s}" for s in sentences] + ([""] if sentences else [])


def _sentence(row: pd.Series, ratio: tuple[float, float, float]) -> str:
    value, lo, hi = ratio
    bounds = "" if math.isnan(lo) else f" [{lo:.2f}–{hi:.2f}]"
    return (
        f"{row['cell_id']} reaches {row['target']} in {value:.2f}× its baseline's time{bounds}, "
        f"{row['n_reached']}/{row['n']} seeds."
    )


def health(df: pd.DataFrame) -> list[str]:
    """The training-health table: one row per cell over its ok repeats."""
    if "grad_norm_median" not in df or df.empty:
        return []
    ok = df[df["ok"].fillna(False).astype(bool) & df["grad_norm_median"].notna()]
    if ok.empty:
        return []
    rows = []
    for _, group in ok.groupby("cell_hash", sort=False):
        rows.append(
            [
                group.iloc[0]["cell_id"],
                len(group),
                fmt.num(group["grad_norm_median"].median()),
                fmt.num(group["grad_norm_max"].max()),
                fmt.percent(group["clipped_fraction"].median()),
                _total(group["nonfinite_grad_steps"]),
                _total(group["overflow_skipped_steps"]),
                _total(group["loss_spikes"]),
            ]
        )
    headers = ["cell", "runs", "grad norm (median)", "grad norm (max)", "clipped steps"]
    headers += ["non-finite grad steps", "fp16 skipped", "loss spikes"]
    return [
        "## Training health",
        "",
        "Per optimizer step, warmup included: the global gradient norm before clipping (median "
        "over runs of each run's median; max over runs), the median share of steps clipped, and "
        "totals over runs of steps with a non-finite gradient, steps fp16's loss scaling skipped "
        "and loss spikes (a loss above the median of the previous 20 steps by more than 6 robust "
        "standard deviations and 1%).",
        "",
        *table(rows, headers),
    ]


def _total(values: pd.Series) -> str:
    present = values.dropna()
    return fmt.MISSING if present.empty else str(int(present.astype(int).sum()))
