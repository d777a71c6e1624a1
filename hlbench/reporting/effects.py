"""Effects of a technique against its baseline, and one framework against another.

Baseline of a cell: the cell of the same workload, backend and variant axes (compile, augmentation,
...) with fp32, 1 accumulation step and no pruning. Effects:
- speedup: tokens/s ratio from median step times (tokens per step × 1/median), 95% bootstrap
  interval;
- memory saving: 1 − peak/baseline peak, over all repeat pairs; only between figures of the same
  source;
- quality cost: excess eval loss minus the baseline's, in nats, over all repeat pairs.
An effect is "within noise" when its interval includes no change, or it is smaller than what the
measurement resolves (MEMORY_NOISE_FRACTION, LOSS_NOISE_NATS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from hlbench.reporting import stats
from hlbench.reporting.cells import BASELINE_AXES, CORE_AXES, is_baseline, variant_axes

# Peak RSS moves by allocator slack and page granularity from run to run; below 2% it is not a
# saving.
MEMORY_NOISE_FRACTION = 0.02
# Eval loss over a few held-out batches: differences below 0.01 nats are not a quality cost.
LOSS_NOISE_NATS = 0.01


@dataclass(frozen=True)
class Effect:
    point: float | None
    lo: float | None
    hi: float | None
    within_noise: bool
    note: str = ""  # why there is no number (different memory sources, missing data)


@dataclass(frozen=True)
class Comparison:
    cell_id: str
    reference_id: str
    workload: str
    backend: str
    axes: dict[str, Any]
    speedup: Effect
    memory: Effect  # memory saving (baseline effects) or peak ratio (framework ratios)
    quality: Effect


def _speedup(cell: Any, ref: Any) -> Effect:
    if cell["step_time_median_s"] is None or ref["step_time_median_s"] is None:
        return Effect(None, None, None, False, "no step times")
    tokens_c, tokens_r = float(cell["tokens_per_step"] or 1), float(ref["tokens_per_step"] or 1)
    point = (tokens_c / cell["step_time_median_s"]) / (tokens_r / ref["step_time_median_s"])
    # throughput ratio = (tokens_c / t_c) / (tokens_r / t_r), so the step-time draws go in crosswise
    lo, hi = stats.ratio_interval(
        tokens_c * ref["boot_median_step_s"], tokens_r * cell["boot_median_step_s"]
    )
    return Effect(point, lo, hi, stats.includes(lo, hi, 1.0))


def _memory_values(cell: Any, ref: Any) -> tuple[str, str, str] | None:
    """Which per-repeat memory arrays to compare: the peak when its source is the same, else RSS."""
    if (
        cell["peak_mem_source"] is not None
        and cell["peak_mem_source"] == ref["peak_mem_source"] != "mixed"
    ):
        return "peak_mem_each_bytes", "peak_mem_bytes", str(cell["peak_mem_source"])
    if len(cell["host_rss_each_bytes"]) and len(ref["host_rss_each_bytes"]):
        return "host_rss_each_bytes", "host_peak_rss_bytes", "host_peak_rss_bytes"
    return None


def _memory_saving(cell: Any, ref: Any) -> Effect:
    chosen = _memory_values(cell, ref)
    if chosen is None or cell[chosen[1]] is None or ref[chosen[1]] is None:
        return Effect(None, None, None, False, "no common memory figure")
    each, median, source = chosen
    point = 1.0 - cell[median] / ref[median]
    lo_ratio, hi_ratio = stats.pairwise_range(cell[each], ref[each], "ratio")
    lo, hi = 1.0 - hi_ratio, 1.0 - lo_ratio
    noise = stats.includes(lo, hi, 0.0) or abs(point) < MEMORY_NOISE_FRACTION
    return Effect(point, lo, hi, noise, "" if source == cell["peak_mem_source"] else "host RSS")


def _memory_ratio(cell: Any, ref: Any) -> Effect:
    chosen = _memory_values(cell, ref)
    if chosen is None or cell[chosen[1]] is None or ref[chosen[1]] is None:
        return Effect(None, None, None, False, "no common memory figure")
    each, median, source = chosen
    point = cell[median] / ref[median]
    lo, hi = stats.pairwise_range(cell[each], ref[each], "ratio")
    noise = stats.includes(lo, hi, 1.0) or abs(point - 1.0) < MEMORY_NOISE_FRACTION
    return Effect(point, lo, hi, noise, "" if source == cell["peak_mem_source"] else "host RSS")


def _quality_cost(cell: Any, ref: Any) -> Effect:
    if cell["excess_eval_loss_nats"] is None or ref["excess_eval_loss_nats"] is None:
        return Effect(None, None, None, False, "no excess loss")
    point = cell["excess_eval_loss_nats"] - ref["excess_eval_loss_nats"]
    lo, hi = stats.pairwise_range(cell["excess_each_nats"], ref["excess_each_nats"], "diff")
    return Effect(point, lo, hi, stats.includes(lo, hi, 0.0) or abs(point) < LOSS_NOISE_NATS)


def _key(row: Any, axes: list[str]) -> tuple:
    return tuple(str(row[a]) for a in axes)


def baseline_effects(cells: pd.DataFrame) -> tuple[list[Comparison], list[str]]:
    """Every ok non-baseline cell against its baseline; notes for groups without a baseline."""
    variants = variant_axes(cells)
    ok = cells[cells["n_ok"] > 0]
    baselines = {
        _key(r, ["workload", "backend", *variants]): r for _, r in ok.iterrows() if is_baseline(r)
    }
    out, notes, missing = [], [], set()
    for _, cell in ok.iterrows():
        if is_baseline(cell):
            continue
        group = _key(cell, ["workload", "backend", *variants])
        ref = baselines.get(group)
        if ref is None:
            missing.add(group)
            continue
        out.append(
            Comparison(
                cell["cell_id"],
                ref["cell_id"],
                cell["workload"],
                cell["backend"],
                {a: cell[a] for a in [*CORE_AXES, *variants]},
                _speedup(cell, ref),
                _memory_saving(cell, ref),
                _quality_cost(cell, ref),
            )
        )
    baseline_text = "/".join(f"{v}" for v in BASELINE_AXES.values())
    for group in sorted(missing):
        notes.append(
            f"{'/'.join(group)}: no ok baseline cell ({baseline_text}); effects not computed"
        )
    return out, notes


def reference_backend(backends: list[str]) -> str:
    """PyTorch when present (ratios read "TensorFlow / PyTorch"), else the first name."""
    return "torch" if "torch" in backends else sorted(backends)[0]


def framework_ratios(cells: pd.DataFrame) -> list[Comparison]:
    """Every other backend against the reference backend, for each cell both ran ok."""
    ok = cells[cells["n_ok"] > 0]
    backends = sorted(set(ok["backend"]))
    if len(backends) < 2:
        return []
    ref_name = reference_backend(backends)
    axes = ["workload", *CORE_AXES, *variant_axes(cells)]
    refs = {_key(r, axes): r for _, r in ok[ok["backend"] == ref_name].iterrows()}
    out = []
    for _, cell in ok[ok["backend"] != ref_name].iterrows():
        ref = refs.get(_key(cell, axes))
        if ref is not None:
            out.append(
                Comparison(
                    cell["cell_id"],
                    ref["cell_id"],
                    cell["workload"],
                    cell["backend"],
                    {a: cell[a] for a in axes[1:]},
                    _speedup(cell, ref),
                    _memory_ratio(cell, ref),
                    _quality_cost(cell, ref),
                )
            )
    return out
