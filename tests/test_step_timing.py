"""The timed loop's per-step timing: CPU step times that tile the window, technique events off
the clock, and the CUDA event timer's one-sync-per-window structure (with fake events, no GPU)."""

from __future__ import annotations

import time

import pytest

from hlbench.backends.timers import HostTimer, WindowTimer
from hlbench.worker.measure import Events, TimingPlan, run_timed


def test_cpu_step_times_sum_to_the_window_time_within_one_percent():
    timing = run_timed(lambda i: time.sleep(0.004), lambda: None, TimingPlan(1, 12, 3, 1e9))
    assert timing.step_time_source == HostTimer.source
    for times, wall in zip(timing.window_step_times_s, timing.window_wall_s):
        assert len(times) == 12
        assert sum(times) == pytest.approx(wall, rel=0.01)


class FakeDevice:
    """A device clock that advances only while steps run, and a host clock that also advances in
    events; counts syncs and remembers what happened in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.log: list[str] = []

    def step(self, i: int) -> None:
        self.log.append(f"step{i}")
        self.now += 1.0

    def sync(self) -> None:
        self.log.append("sync")

    def clock(self) -> float:
        return self.now

    def event(self, i: int) -> None:
        self.log.append(f"event{i}")
        self.now += 100.0  # far slower than a step: any leak into a step time shows


def test_a_technique_event_is_in_no_step_time_and_no_window_time():
    dev = FakeDevice()
    events = Events("pruning", lambda i: i in (0, 2, 4, 5), dev.event)
    timing = run_timed(dev.step, dev.sync, TimingPlan(2, 3, 2, 1e9), clock=dev.clock, events=events)
    assert timing.warmup_step_times_s == [1.0, 1.0]
    assert timing.window_step_times_s == [[1.0] * 3, [1.0] * 3]
    assert timing.window_wall_s == [3.0, 3.0]
    assert [(e["technique"], e["step"], e["s"]) for e in timing.technique_events] == [
        ("pruning", s, 100.0) for s in (0, 2, 4, 5)
    ]
    # each event runs before its step, with a sync after it and the timed segment closed around it
    log = dev.log
    for s in (0, 2, 4, 5):
        at = log.index(f"event{s}")
        assert log[at + 1] == "sync" and log.index(f"step{s}") > at


def test_an_injected_delay_in_a_window_event_does_not_reach_the_step_times():
    timing = run_timed(
        lambda i: time.sleep(0.002),
        lambda: None,
        TimingPlan(1, 6, 1, 1e9),
        events=Events("pruning", lambda i: i == 3, lambda i: time.sleep(0.2)),
    )
    assert max(timing.window_step_times_s[0]) < 0.1
    assert timing.window_wall_s[0] < 0.1
    assert timing.technique_events[0]["s"] >= 0.2


def test_window_timer_gives_each_step_its_segment_mean():
    dev = FakeDevice()
    events = Events("pruning", lambda i: i == 3, dev.event)
    timing = run_timed(
        dev.step,
        dev.sync,
        TimingPlan(1, 4, 1, 1e9),
        clock=dev.clock,
        timer=WindowTimer(dev.clock),
        events=events,
    )
    assert timing.window_step_times_s == [[1.0] * 4]
    assert timing.window_wall_s == [4.0] and timing.step_time_source == WindowTimer.source
    window = dev.log[dev.log.index("step1") : dev.log.index("step4") + 1]
    assert window.count("sync") == 2  # around the event only: none between steps


torch = pytest.importorskip("torch")
from hlbench.backends.torch.timing import EventTimer  # noqa: E402


class FakeCudaEvent:
    """torch.cuda.Event's interface over FakeDevice's clock; elapsed_time fails unless a sync
    came after both events were recorded (as CUDA's does for events not yet reached)."""

    def __init__(self, dev: FakeDevice) -> None:
        self.dev, self.t, self.at = dev, None, None

    def record(self) -> None:
        self.t, self.at = self.dev.now, len(self.dev.log)
        self.dev.log.append("record")

    def elapsed_time(self, end: FakeCudaEvent) -> float:
        synced = "sync" in self.dev.log[max(self.at, end.at) :]
        if not synced:
            raise RuntimeError("event not completed")
        return (end.t - self.t) * 1000.0


def test_cuda_event_timing_syncs_once_per_window_and_times_every_step():
    dev = FakeDevice()
    timer = EventTimer(lambda: FakeCudaEvent(dev))
    timing = run_timed(dev.step, dev.sync, TimingPlan(2, 5, 3, 1e9), clock=dev.clock, timer=timer)
    assert timing.window_step_times_s == [[1.0] * 5] * 3
    assert timing.window_wall_s == [5.0] * 3 and timing.step_time_source == EventTimer.source
    for w in range(3):
        first, last = 2 + 5 * w, 2 + 5 * w + 4
        inside = dev.log[dev.log.index(f"step{first}") : dev.log.index(f"step{last}") + 1]
        assert "sync" not in inside  # no sync between a window's steps
        after = dev.log[dev.log.index(f"step{last}") + 1 :]
        assert after[:2] == ["record", "sync"]  # the last step's event, then the window's one sync


def test_the_gpu_overhead_benchmark_says_so_and_exits_0_without_cuda():
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(repo)}
    proc = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "gpu_overhead.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stderr and "nothing measured" in proc.stderr
