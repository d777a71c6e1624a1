"""One record from the ranks of a data-parallel cell (framework-neutral; the chief combines them).

Each process gathers the same per-rank figures (hlbench.worker.train, through
Trainer.all_gather_objects): its measured step times, window times and memory. The record then
says:
- step times: per step, the slowest rank's time. Every rank ends each optimizer step at the same
  gradient all-reduce, so the slowest rank sets the pace; throughput is global tokens per step over
  the slowest rank's window time;
- memory: each figure's maximum over the ranks (the rank that needs the most decides whether a size
  fits), and every rank's own figures in `distributed.per_rank`;
- `distributed`: the strategy, world size, processes, and per rank its host, device, median step
  time and memory, plus which rank was the slowest.
"""

from __future__ import annotations

import statistics
from typing import Any

from hlbench.worker.measure import Timing


def slowest_timing(per_rank: list[dict[str, Any]]) -> Timing:
    """The chief's timing with each step and window replaced by the slowest rank's."""
    timings = [r["timing"] for r in per_rank]
    chief = timings[0]
    n_windows = {len(t["window_step_times_s"]) for t in timings}
    n_steps = {tuple(len(w) for w in t["window_step_times_s"]) for t in timings}
    if (
        len(n_windows) != 1 or len(n_steps) != 1
    ):  # the budget decision is collective (measure.run_timed)
        raise RuntimeError(f"ranks measured different windows or steps: {sorted(n_steps)}")
    return Timing(
        warmup_step_times_s=_elementwise_max([t["warmup_step_times_s"] for t in timings]),
        window_step_times_s=[
            _elementwise_max([t["window_step_times_s"][w] for t in timings])
            for w in range(len(chief["window_step_times_s"]))
        ],
        window_wall_s=_elementwise_max([t["window_wall_s"] for t in timings]),
        window_monotonic_s=chief["window_monotonic_s"],  # this node's clock, for its telemetry
        budget_hit=any(t["budget_hit"] for t in timings),
        steps_planned=chief["steps_planned"],
        step_time_source=chief["step_time_source"],
        # every rank runs the same events (the same schedule); the slowest rank's time for each
        technique_events=[
            {**events[0], "s": max(e["s"] for e in events)}
            for events in zip(*(t["technique_events"] for t in timings))
        ],
    )


def _elementwise_max(lists: list[list[float]]) -> list[float]:
    return [max(values) for values in zip(*lists)]


def max_memory(per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    """Each memory figure's maximum over the ranks (numbers), else the chief's value (reasons)."""
    out: dict[str, Any] = {}
    for key, value in per_rank[0]["memory"].items():
        numbers = [
            r["memory"].get(key) for r in per_rank if isinstance(r["memory"].get(key), (int, float))
        ]
        out[key] = max(numbers) if numbers else value
    return out


def distributed_section(launch: dict[str, Any], per_rank: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for r in per_rank:
        steps = [t for w in r["timing"]["window_step_times_s"] for t in w]
        rows.append(
            {
                "rank": r["rank"],
                "host": r["host"],
                "pid": r["pid"],
                "device": r["device"],
                "step_time_median_s": statistics.median(steps) if steps else None,
                "measured_wall_s": sum(r["timing"]["window_wall_s"]),
                "memory": r["memory"],
            }
        )
    medians = [(row["step_time_median_s"] or 0.0, row["rank"]) for row in rows]
    return {
        **launch,
        "processes": len(per_rank),  # MirroredStrategy: one process drives every replica
        "slowest_rank": max(medians)[1] if medians else None,
        "per_rank": rows,
        # the record's step times are the per-step maximum over the ranks, its memory the maximum
        "aggregation": "step and window times: slowest rank per step; memory: max over ranks",
    }
