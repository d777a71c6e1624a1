"""The trade-off frontier: which cells are worth training with on this machine.

Within a workload, a cell is on the frontier when no other cell is at least as good on all of
(tokens/s ↑, peak memory ↓, excess eval loss ↓) and better on one. For a few memory budgets, the
recommendation is the fastest cell that fits and whose excess loss is within `tolerance_nats` of its
backend's fp32 baseline — the answer to "what should I train with here?".

Memory must be one kind of figure to be compared: when a workload's cells report peaks from
different sources (a PyTorch RSS beside a TensorFlow allocator peak), host RSS, which every record
has, is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hlbench.reporting.cells import is_baseline
from hlbench.reporting.tolerance import DEFAULT_TOLERANCE_NATS

BUDGET_QUANTILES = (0.25, 0.5, 0.75, 1.0)


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
    cells: pd.DataFrame, tolerance_nats: float = DEFAULT_TOLERANCE_NATS
) -> list[Frontier]:
    out = []
    ok = cells[
        (cells["n_ok"] > 0) & cells["tokens_per_s"].notna() & cells["excess_eval_loss_nats"].notna()
    ]
    for workload in sorted(set(ok["workload"])):
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
