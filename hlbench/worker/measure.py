"""The timed loop: warmup as startup, then measured windows, each step ended by a device sync.

Framework-neutral: the backend supplies `step(i)` (one optimizer step on batch i) and `sync()`
(block until the device is idle). Every clock read follows a sync, so a step's time is the time its
work took, not the time its kernels took to be queued.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


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


@dataclass(frozen=True)
class TimingPlan:
    """How a cell is timed: warmup steps, then up to `windows` windows of `steps` measured steps,
    stopping early once the measured steps have taken `budget_s`."""

    warmup_steps: int
    steps: int
    windows: int
    budget_s: float

    @classmethod
    def from_measurement(cls, measurement: dict[str, Any]) -> TimingPlan:
        """The plan of a cell's `measurement` section (Cell.measurement)."""
        return cls(
            warmup_steps=measurement.warmup_steps,
            steps=measurement.steps,
            windows=measurement.windows,
            budget_s=measurement.budget_s,
        )

    @property
    def n_steps(self) -> int:
        """Optimizer steps when the budget is not hit: each needs its own batch."""
        return self.warmup_steps + self.windows * self.steps


def run_timed(
    step: Callable[[int], None],
    sync: Callable[[], None],
    plan: TimingPlan,
    on_window_start: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    agree: Callable[[bool], bool] | None = None,
) -> Timing:
    """Run the plan's warmup, then its windows, stopping early past its budget.

    Step indices run on from the warmup (0 … warmup_steps-1, then the measured ones), so each
    optimizer step sees its own batch. At least one measured step always runs, so a record always
    has a figure.

    `agree` (data-parallel cells): makes the budget decision collective — given this rank's "over
    budget", it returns whether any rank is. Every rank must then run the same steps (one that
    stopped alone would leave the others waiting in an all-reduce), so the budget is checked only
    between windows, outside the timed region, with one small collective per window.
    """
    timing = Timing(steps_planned=plan.windows * plan.steps)
    for i in range(plan.warmup_steps):
        t0 = clock()
        step(i)
        sync()
        timing.warmup_step_times_s.append(clock() - t0)

    index, spent_s = plan.warmup_steps, 0.0
    for _ in range(plan.windows):
        over = spent_s >= plan.budget_s
        if agree is not None and timing.window_step_times_s:
            over = agree(over)  # collective: every rank stops at the same window
        if over:
            timing.budget_hit = True
            break
        on_window_start()
        sync()
        times: list[float] = []
        start, start_monotonic = clock(), time.monotonic()
        end = start
        for _ in range(plan.steps):
            if agree is None and spent_s >= plan.budget_s and (times or timing.window_step_times_s):
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
