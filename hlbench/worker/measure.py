"""The timed loop: warmup as startup, then measured windows; technique events between steps, off
the clock.

Framework-neutral: the backend supplies `step(i)` (one optimizer step on batch i), `sync()` (block
until the device is idle) and a StepTimer (hlbench.backends.timers) for the per-step times. Every
clock read that ends a timed region follows a sync, so a window's time is the time its work took,
not the time its kernels took to be queued. On a CPU the timer syncs and reads the clock after
every step (the sync is a no-op); on CUDA it records a device event per step and the window syncs
once, at its end.

Events (a gradual pruning event before step i): run between two steps with the timed segment
closed around them (a sync before, a sync after), so their time is in `technique_events`, never in
a step time or a window's wall time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hlbench.backends.timers import HostTimer, StepTimer


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
    step_time_source: str = HostTimer.source
    # work a technique did between steps, off the clock: {"technique", "step", "s"} per event
    technique_events: list[dict[str, Any]] = field(default_factory=list)

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


@dataclass(frozen=True)
class Events:
    """Work a technique does before some steps (`due(i)`, then `run(i)`), outside every timed
    region."""

    technique: str = ""
    due: Callable[[int], bool] = lambda i: False
    run: Callable[[int], None] = lambda i: None


NO_EVENTS = Events()


def run_timed(
    step: Callable[[int], None],
    sync: Callable[[], None],
    plan: TimingPlan,
    on_window_start: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    agree: Callable[[bool], bool] | None = None,
    timer: StepTimer | None = None,
    events: Events = NO_EVENTS,
    after_window: Callable[[Timing], bool] | None = None,
) -> Timing:
    """Run the plan's warmup, then its windows, stopping early past its budget.

    Step indices run on from the warmup (0 … warmup_steps-1, then the measured ones), so each
    optimizer step sees its own batch. At least one measured step always runs, so a record always
    has a figure. `timer`: how measured steps are timed (default: a sync and a clock read after
    each). `events`: run before the steps they are due at, off the clock.

    `agree` (data-parallel cells): makes the budget decision collective — given this rank's "over
    budget", it returns whether any rank is. Every rank must then run the same steps (one that
    stopped alone would leave the others waiting in an all-reduce), so the budget is checked only
    between windows, outside the timed region, with one small collective per window.

    `after_window(timing)` (time to target): called after each window, outside every timed region
    (the window ended with a sync); True stops the run there.
    """
    timer = timer or HostTimer(sync, clock)
    timing = Timing(steps_planned=plan.windows * plan.steps, step_time_source=timer.source)
    loop = _Loop(step, sync, clock, timer, events, timing)
    for i in range(plan.warmup_steps):
        loop.event(i)
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
        loop.event(index)  # due at the window's first step: before the window (and its peak reset)
        on_window_start()
        budget_s = None if agree is not None else plan.budget_s - spent_s
        index, wall_s = loop.window(index, plan.steps, budget_s)
        spent_s += wall_s
        if after_window is not None and after_window(timing):
            break
    return timing


@dataclass
class _Loop:
    step: Callable[[int], None]
    sync: Callable[[], None]
    clock: Callable[[], float]
    timer: StepTimer
    events: Events
    timing: Timing

    def event(self, i: int) -> None:
        """The technique's event due before step i, if any: synced and timed on its own."""
        if not self.events.due(i):
            return
        t0 = self.clock()
        self.events.run(i)
        self.sync()
        self.timing.technique_events.append(
            {"technique": self.events.technique, "step": i, "s": self.clock() - t0}
        )

    def window(self, index: int, steps: int, budget_s: float | None) -> tuple[int, float]:
        """One measured window of up to `steps` steps from `index`; returns the next index and the
        window's wall time (its segments', events excluded). `budget_s`: the time left, checked
        before each step on the host clock (no sync; None: only between windows)."""
        timing, clock, timer = self.timing, self.clock, self.timer
        self.sync()
        start_monotonic = time.monotonic()
        segment_start, wall_s, n = clock(), 0.0, 0
        timer.begin()
        for _ in range(steps):
            if n and self.events.due(index):  # close the segment around the event
                self.sync()
                timer.end()
                wall_s += clock() - segment_start
                self.event(index)
                segment_start = clock()
                timer.begin()
            measured = n or timing.window_step_times_s  # at least one step always runs
            if budget_s is not None and measured and wall_s + clock() - segment_start >= budget_s:
                timing.budget_hit = True
                break
            self.step(index)
            timer.lap()
            n, index = n + 1, index + 1
        self.sync()
        timer.end()
        wall_s += clock() - segment_start
        timing.window_step_times_s.append(timer.read())
        timing.window_wall_s.append(wall_s)
        timing.window_monotonic_s.append([start_monotonic, time.monotonic()])
        return index, wall_s


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
