"""The trade-off frontier: which cells are worth training with on this machine.

Within a workload, a cell is on the frontier when no other cell is at least as good on all of
(tokens/s ↑, peak memory ↓, excess eval loss ↓) and better on one. For a few memory budgets, the
recommendation is the fastest cell that fits and whose excess loss is within `tolerance_nats` of its
backend's fp32 baseline — the answer to "what should I train with here?".

Time-to-target records (hlbench.reporting.quality) change the speed axis: when a workload's cells
have time-to-target figures, a cell's speed is its median time to target over seeds (lower is
better), one frontier per target, and the front is on (time to target ↓, peak memory ↓): the
target is the quality bar, so a cell that reaches it is good enough and no loss tolerance applies.
A cell whose median seed did not reach the target has no time to weigh; it is left off and named.

Memory must be one kind of figure to be compared: when a workload's cells report peaks from
different sources (a PyTorch RSS beside a TensorFlow allocator peak), host RSS, which every record
has, is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hlbench.reporting.cells import is_baseline
from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS

BUDGET_QUANTILES = (0.25, 0.5, 0.75, 1.0)
TOKENS_PER_S = "tokens_per_s"
TIME_TO_TARGET = "time_to_target_s"


@dataclass(frozen=True)
class Frontier:
    workload: str
    memory_column: str  # peak_mem_bytes or host_peak_rss_bytes
    memory_source: str  # what the memory numbers measure
    cells: pd.DataFrame  # the non-dominated cells, fastest first
    # (budget bytes, cell hash or None when nothing fits): a hash, since two suites reported
    # together may use one cell id for different cells
    picks: list[tuple[float, str | None]]
    tolerance_nats: float
    basis: str = TOKENS_PER_S  # the speed axis: tokens/s ↑, or time to target ↓ (median, s)
    target: str | None = None  # the target of a time-to-target frontier
    # a time-to-target frontier's cells whose median seed reached the target, with their figures
    # (time_to_target_s, ttt_lo_s, ttt_hi_s, n_reached, n_seeds); None on the tokens/s basis
    weighed: pd.DataFrame | None = None
    left_off: list[str] = field(default_factory=list)  # cell ids whose median did not reach it


def _memory_basis(cells: pd.DataFrame) -> tuple[str, str]:
    sources = set(cells["peak_mem_source"].dropna())
    if len(sources) == 1 and "mixed" not in sources and cells["peak_mem_bytes"].notna().all():
        return "peak_mem_bytes", sources.pop()
    return "host_peak_rss_bytes", "host_peak_rss_bytes"


def non_dominated(speed: np.ndarray, memory: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mask of the points no other dominates (speed maximised, memory and loss minimised)."""
    ge = (
        (speed[None, :] >= speed[:, None])
        & (memory[None, :] <= memory[:, None])
        & (loss[None, :] <= loss[:, None])
    )
    gt = (
        (speed[None, :] > speed[:, None])
        | (memory[None, :] < memory[:, None])
        | (loss[None, :] < loss[:, None])
    )
    # row i is dominated when some column j is ≥ everywhere and > somewhere
    return ~(ge & gt).any(axis=1)


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 1.5, 2, 3, 5, 7.5 × 10^k MiB at or above x bytes (budgets people name)."""
    mib = x / 2**20
    if mib <= 0:
        return 0.0
    base = 10 ** math.floor(math.log10(mib))
    step = next(s for s in (1, 1.5, 2, 3, 5, 7.5, 10) if s * base >= mib * (1 - 1e-12))
    return step * base * 2**20


def frontiers(
    cells: pd.DataFrame,
    tolerance_nats: float = DEFAULT_TOLERANCE_NATS,
    targets: pd.DataFrame | None = None,
) -> list[Frontier]:
    """Per workload, its frontier on tokens/s; or, where its cells have time-to-target figures
    (`targets`: hlbench.reporting.quality.summarize_targets), one per target on time to target."""
    out = []
    ok = cells[
        (cells["n_ok"] > 0) & cells["tokens_per_s"].notna() & cells["excess_eval_loss_nats"].notna()
    ]
    timed = _timed(cells[cells["n_ok"] > 0], targets)
    for workload in sorted(set(ok["workload"]) | set(timed["workload"])):
        if (timed["workload"] == workload).any():
            out += _target_frontiers(workload, timed[timed["workload"] == workload], tolerance_nats)
            continue
        group = ok[ok["workload"] == workload]
        column, source = _memory_basis(group)
        group = group[group[column].notna()]
        if group.empty:
            continue
        speed = group["tokens_per_s"].to_numpy(float)
        memory = group[column].to_numpy(float)
        loss = group["excess_eval_loss_nats"].to_numpy(float)
        front = group[non_dominated(speed, memory, loss)]
        front = (
            front.assign(_speed=-front["tokens_per_s"])
            .sort_values(["_speed", "cell_id"])
            .drop(columns="_speed")
        )
        out.append(
            Frontier(
                workload,
                column,
                source,
                front,
                _picks(group, column, tolerance_nats),
                tolerance_nats,
            )
        )
    return out


def _picks(
    group: pd.DataFrame, column: str, tolerance_nats: float
) -> list[tuple[float, str | None]]:
    # Quality limit per backend: its fp32 baseline's excess loss + tolerance; without a baseline,
    # the best fp32 cell of the workload stands in.
    fp32 = group[group["precision"] == "fp32"]["excess_eval_loss_nats"]
    fallback = float(fp32.min()) if len(fp32) else float(group["excess_eval_loss_nats"].min())
    limits = {
        b: float(g["excess_eval_loss_nats"].iloc[0])
        for b, g in group[group.apply(is_baseline, axis=1)].groupby("backend")
    }
    limit = group["backend"].map(lambda b: limits.get(b, fallback) + tolerance_nats)
    good = group[group["excess_eval_loss_nats"] <= limit + 1e-12]
    budgets = sorted({nice_ceiling(float(np.quantile(group[column], q))) for q in BUDGET_QUANTILES})
    picks = []
    for budget in budgets:
        fits = good[good[column] <= budget]
        if fits.empty:
            picks.append((budget, None))
            continue
        best = fits.assign(_speed=-fits["tokens_per_s"]).sort_values(["_speed", "cell_id"]).iloc[0]
        picks.append((budget, str(best["cell_hash"])))
    return picks


def _timed(cells: pd.DataFrame, targets: pd.DataFrame | None) -> pd.DataFrame:
    """The cells with time-to-target figures, joined with them (by cell hash)."""
    if targets is None or targets.empty:
        return cells.iloc[0:0].assign(target=None)
    figures = pd.DataFrame(
        {
            "cell_hash": targets["cell_hash"],
            "target": targets["target"],
            TIME_TO_TARGET: [t[0] for t in targets["ttt"]],
            "ttt_lo_s": [t[1] for t in targets["ttt"]],
            "ttt_hi_s": [t[2] for t in targets["ttt"]],
            "n_reached": targets["n_reached"],
            "n_seeds": targets["n"],
        }
    )
    return cells.drop(columns=["target"], errors="ignore").merge(figures, on="cell_hash")


def _target_frontiers(workload: str, group: pd.DataFrame, tolerance_nats: float) -> list[Frontier]:
    out = []
    for target in sorted(set(group["target"])):
        rows = group[group["target"] == target]
        reached = rows[np.isfinite(rows[TIME_TO_TARGET].to_numpy(float))]
        left_off = sorted(set(rows["cell_id"]) - set(reached["cell_id"]))
        column, source = _memory_basis(reached) if len(reached) else ("host_peak_rss_bytes", "")
        reached = reached[reached[column].notna()]
        if reached.empty:
            front, picks = reached, []
        else:
            time_s = reached[TIME_TO_TARGET].to_numpy(float)
            memory = reached[column].to_numpy(float)
            # the speed axis is maximised, so it is minus the time; loss is fixed by the target
            mask = non_dominated(-time_s, memory, np.zeros(len(reached)))
            front = reached[mask].sort_values([TIME_TO_TARGET, "cell_id"])
            picks = _fastest_to_target(reached, column)
        out.append(
            Frontier(
                workload,
                column,
                source,
                front,
                picks,
                tolerance_nats,
                TIME_TO_TARGET,
                str(target),
                reached,
                left_off,
            )
        )
    return out


def _fastest_to_target(reached: pd.DataFrame, column: str) -> list[tuple[float, str | None]]:
    budgets = sorted(
        {nice_ceiling(float(np.quantile(reached[column], q))) for q in BUDGET_QUANTILES}
    )
    picks: list[tuple[float, str | None]] = []
    for budget in budgets:
        fits = reached[reached[column] <= budget]
        # on a tie in time, the cell more of whose seeds reached the target
        fits = fits.assign(_missed=fits["n_seeds"] - fits["n_reached"]).sort_values(
            [TIME_TO_TARGET, "_missed", "cell_id"]
        )
        picks.append((budget, str(fits.iloc[0]["cell_hash"]) if len(fits) else None))
    return picks
