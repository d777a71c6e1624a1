"""Per-step times on CUDA without a sync per step: a CUDA event recorded on the stream after every
step, the elapsed times read once per window, after the loop's sync (hlbench.backends.timers).

Step i's time is the device time between the event that ended step i-1 (or the segment's start)
and the one that ends step i, so the steps of a segment tile it with no gap and the launch queue
never drains inside a window. The event factory is injectable so the structure is tested on a CPU
with fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hlbench.backends.timers import StepTimer


def cuda_event() -> Any:
    return torch.cuda.Event(enable_timing=True)


class EventTimer(StepTimer):
    source = "CUDA events after every step, read after one device sync per window"

    def __init__(self, event: Callable[[], Any] = cuda_event) -> None:
        self.event = event
        self.segments: list[list[Any]] = []  # events per segment: its start, then one per lap

    def _record(self) -> Any:
        e = self.event()
        e.record()  # on the current stream, after everything queued before it
        return e

    def begin(self) -> None:
        self.segments.append([self._record()])

    def lap(self) -> None:
        self.segments[-1].append(self._record())

    def read(self) -> list[float]:
        # the events are complete: the loop synced before calling this
        times = [
            a.elapsed_time(b) / 1000.0  # milliseconds
            for events in self.segments
            for a, b in zip(events, events[1:])
        ]
        self.segments = []
        return times
