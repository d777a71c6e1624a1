"""The timed loop: warmup as startup, then measured windows, each step ended by a device sync.

Framework-neutral: the backend supplies `step(i)` (one optimizer step on batch i) and `sync()` (block
until the device is idle). Every clock read follows a sync, so a step's time is the time its work took,
not the time its kernels took to be queued.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class Timing:
    warmup_step_times_s: list[float] = field(default_factory=list)
    window_step_times_s: list[list[float]] = field(default_factory=list)  # raw, one list per window
    window_wall_s: list[float] = field(default_factory=list)
    # [start, end] of each window on time.monotonic(), the system-wide clock the parent's telemetry
    # sampler also reads, so its samples can be aligned to the measured windows.
    window_monotonic_s: list[list[float]] = field(default_factory=list)
    budget_hit: bool = False
    steps_planned: int = 0

    @property
    def step_times_s(self) -> list[float]:
        return [t for window in self.window_step_times_s for t in window]

    @property
    def steps_measured(self) -> int:
        return len(self.step_times_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_measured": self.steps_measured}


def run_timed(
    step: Callable[[int], None],
    sync: Callable[[], None],
    warmup_steps: int,
    steps: int,
    windows: int,
    budget_s: float,
    on_window_start: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    agree: Callable[[bool], bool] | None = None,
) -> Timing:
    """Run warmup then up to `windows` × `steps` measured steps, stopping early past `budget_s`.

    Step indices run on from the warmup (0 … warmup_steps-1, then the measured ones), so each optimizer
    step sees its own batch. At least one measured step always runs, so a record always has a figure.

    `agree` (data-parallel cells): makes the budget decision collective — given this rank's "over
    budget", it returns whether any rank is. Every rank must then run the same steps (one that stopped
    alone would leave the others waiting in an all-reduce), so the budget is checked only between
    windows, outside the timed region, with one small collective per window.
    """
    timing = Timing(steps_planned=windows * steps)
    for i in range(warmup_steps):
        t0 = clock()
        step(i)
        sync()
        timing.warmup_step_times_s.append(clock() - t0)

    index, spent_s = warmup_steps, 0.0
    for _ in range(windows):
        over = spent_s >= budget_s
        if (agree(over) if agree is not None and timing.window_step_times_s else over):
            timing.budget_hit = True
            break
        on_window_start()
        sync()
        times: list[float] = []
        start, start_monotonic = clock(), time.monotonic()
        end = start
        for _ in range(steps):
            if agree is None and spent_s >= budget_s and (times or timing.window_step_times_s):
                timing.budget_hit = True
                break
            t0 = clock()
            step(index)
            sync()
            end = clock()
            times.append(end - t0)
            spent_s += end - t0
            index += 1
        timing.window_step_times_s.append(times)
        timing.window_wall_s.append(end - start)
        timing.window_monotonic_s.append([start_monotonic, time.monotonic()])
    return timing


def step_stats(step_times_s: list[float]) -> dict[str, float | None]:
    """Median and interquartile range of per-step times (robust to the odd slow step)."""
    if not step_times_s:
        return {"step_time_median_s": None, "step_time_iqr_s": None, "step_time_mean_s": None}
    if len(step_times_s) >= 2:
        q1, _, q3 = statistics.quantiles(step_times_s, n=4, method="inclusive")
    else:
        q1 = q3 = step_times_s[0]
    return {
        "step_time_median_s": statistics.median(step_times_s),
        "step_time_iqr_s": q3 - q1,
        "step_time_mean_s": statistics.fmean(step_times_s),
    }
