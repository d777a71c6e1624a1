"""How the measured steps of a window are timed: the StepTimer protocol and its framework-neutral
kinds. A backend picks one for its device (Trainer.step_timer); hlbench.worker.measure drives it.

The loop calls, for every run of consecutive measured steps (a segment: a window, split where a
technique's event runs between two steps, outside the timed region):

    sync(); timer.begin()        # the device is idle: the segment starts
    step(i); timer.lap()         # after each step, no sync
    ...
    sync(); timer.end()          # the segment ends (before an event, or the window's end)
    times = timer.read()         # once per window, after its closing sync: every lap's seconds

Kinds:
- HostTimer (CPUs, and the default): a device sync and a host clock read after every step. On a
  CPU the sync is a no-op, so this costs nothing and each step's time is exact.
- WindowTimer (TensorFlow on a GPU: TensorFlow exposes no device event timer): no sync inside the
  segment; each step of a segment is given the segment's mean step time, measured between its two
  syncs. Honest about what it knows: the throughput is exact, the spread between steps is not
  measured (only between segments and windows); records say so in `timing.step_time_source`.
- The PyTorch backend's CUDA event timer (hlbench.backends.torch.timing): an event recorded after
  every step on the stream, elapsed times read after the window's sync.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable


class StepTimer(ABC):
    """Per-step times of the measured steps, read once per window."""

    source: str  # what the times are, for the record's timing.step_time_source

    @abstractmethod
    def begin(self) -> None:
        """A segment of steps starts; the device is idle (the loop synced)."""

    @abstractmethod
    def lap(self) -> None:
        """The step just issued ends here (and the next one starts)."""

    def end(self) -> None:
        """The segment ends; the device is idle (the loop synced)."""

    @abstractmethod
    def read(self) -> list[float]:
        """Seconds per lap since the last read, in order; called after the window's closing
        sync."""


class HostTimer(StepTimer):
    source = "host clock, device sync after every step"

    def __init__(self, sync: Callable[[], None], clock: Callable[[], float]) -> None:
        self.sync, self.clock = sync, clock
        self.times: list[float] = []
        self.last = 0.0

    def begin(self) -> None:
        self.last = self.clock()

    def lap(self) -> None:
        self.sync()
        now = self.clock()
        self.times.append(now - self.last)
        self.last = now

    def read(self) -> list[float]:
        times, self.times = self.times, []
        return times


class WindowTimer(StepTimer):
    source = "segment mean: one device sync per window, no per-step device clock"

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.start, self.laps = 0.0, 0
        self.times: list[float] = []

    def begin(self) -> None:
        self.start, self.laps = self.clock(), 0

    def lap(self) -> None:
        self.laps += 1

    def end(self) -> None:
        if self.laps:
            self.times += [(self.clock() - self.start) / self.laps] * self.laps
        self.laps = 0

    def read(self) -> list[float]:
        times, self.times = self.times, []
        return times
