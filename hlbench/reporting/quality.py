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
from collections.abc import Sequence
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


def ratio_text(x: float) -> str:
    """A ratio of times; a bound past every budget (a resample whose median missed) is unbounded."""
    return "unbounded" if not fmt.missing(x) and math.isinf(x) else fmt.ratio(x)


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
        k_med, k_lo, k_hi, k_draws = _median_interval(tokens, f"{cell_hash}")
        f_med, f_lo, f_hi, f_draws = _median_interval(final, f"{cell_hash}")
        # without a floor (an eval-loss target) the last eval's loss stands for the final excess
        last = group.get("eval_loss_nats", pd.Series(dtype=float)).dropna().astype(float)
        e_med, e_lo, e_hi, e_draws = _median_interval(last.to_numpy(), f"{cell_hash}")
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
                "tokens_draws": k_draws,
                "final_excess": (f_med, f_lo, f_hi),
                "final_draws": f_draws,
                "final_eval": (e_med, e_lo, e_hi),
                "final_eval_draws": e_draws,
                "best_excess": float(group["best_excess_nats"].astype(float).median()),
                "eval_s": float(group["eval_s_total"].astype(float).median()),
            }
        )
    return pd.DataFrame(rows)


def twin_of(row: pd.Series, cells: pd.DataFrame) -> pd.Series | None:
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


def vs_twin(row: pd.Series, twin: pd.Series | None, key: str = "ttt") -> tuple[float, float, float]:
    """Ratio of median times (key "ttt") or tokens ("tokens") to target, cell / twin, and its
    paired bootstrap interval."""
    if twin is None or not (math.isfinite(row[key][0]) and math.isfinite(twin[key][0])):
        return math.nan, math.nan, math.nan
    a, b = row[f"{key}_draws"], twin[f"{key}_draws"]
    value = row[key][0] / twin[key][0]
    if np.isfinite(a).all() and np.isfinite(b).all():
        lo, hi = ratio_interval(a, b)
        return value, math.nan if lo is None else lo, math.nan if hi is None else hi
    # a resample where more than half the seeds missed has an infinite median: the ratio of two
    # such draws is unknown (NaN), so it counts as unbounded, like a miss of the cell alone
    with np.errstate(invalid="ignore"):
        draws = a / b
    draws = np.where(np.isnan(draws), math.inf, draws)
    lo, hi = _inf_percentiles(draws)
    return value, lo, hi


def time_to_target(
    df: pd.DataFrame, plots: Sequence[tuple[str, str, str]] = (), plot_dir: str = ""
) -> list[str]:
    """The time-to-target section, with the eval-curve plots `plots` ((title, file name or figure
    key, how to read it), under `plot_dir`); nothing for records without one."""
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
        "budget). `× baseline`: median time against the fp32, 1-step, unpruned twin (the "
        "findings state each cell against it, with the final excess loss).",
        "",
    ]
    rows = []
    for _, row in cells.iterrows():
        ratio = vs_twin(row, twin_of(row, cells))
        rows.append(
            [
                row["cell_id"],
                row["target"],
                f"{row['n_reached']}/{row['n']}",
                _with_interval(*row["ttt"], _seconds),
                _with_interval(*row["tokens"], _tokens),
                _with_interval(*row["final_excess"], fmt.nats),
                fmt.nats(row["best_excess"]),
                _with_interval(*ratio, ratio_text),
                _seconds(row["eval_s"]),
            ]
        )
    headers = ["cell", "target", "reached", "time to target", "tokens to target"]
    headers += ["final excess (nats)", "best excess", "× baseline", "eval time"]
    lines += table(rows, headers)
    for title, name, note in plots:
        lines += [f"### {title}", "", f"![{title}]({plot_dir}/{name})", "", note, ""]
    return lines


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
