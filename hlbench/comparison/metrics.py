"""What `hlbench compare` can compare: one estimate per run (a worker process) of each metric.

The run is the statistical unit: steps of one process share its allocator, thread placement, clock
state and neighbours, so they are not independent samples of the cell's speed. Each repeat of a
cell therefore contributes one number per metric, read through hlbench.records (the fields every
tool shares):

- tokens/s: the record's own figure, tokens over measured window wall time, the same number `run`,
  `report` and `table` print;
- step time: the run's median step time (one run's steps summarised, robust to a stray slow step);
- peak memory, host RSS, energy per token, excess eval loss: one value per run already;
- time and tokens to target (mode time_to_target; with `seeds`, one run per seed): the runs that
  reached the target.

`deterministic` marks the figures that (nearly) do not vary between identical runs: the allocator's
peak is exact, the process's peak RSS nearly so, the fp32 loss of a fixed seed is reproducible.
Below the runs a test needs, compare may judge those on the threshold alone; timing figures never.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hlbench.records import fields, memory, quality


@dataclass(frozen=True)
class Metric:
    """One comparable quantity and how to draw its per-run estimate from an `ok` record."""

    name: str  # the --metric value and JSON key
    label: str  # column header
    unit: str
    higher_is_better: bool
    deterministic: bool  # identical runs give (nearly) the same value
    estimate: Callable[[dict[str, Any]], float | None]  # None: not in this record


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _tokens_per_s(record: dict[str, Any]) -> float | None:
    """The record's tokens/s; for a record that lacks it, the same definition from its parts
    (tokens measured over the windows' wall time, else over the sum of its step times)."""
    recorded = _finite(fields.tokens_per_s(record))
    if recorded is not None:
        return recorded
    tokens = fields.tokens_measured(record)
    wall_s = fields.measured_wall_s(record) or sum(fields.step_times_s(record))
    return _finite(tokens / wall_s) if tokens and wall_s else None


def _step_time_s(record: dict[str, Any]) -> float | None:
    steps = fields.step_times_s(record)
    return _finite(statistics.median(steps)) if steps else None


def _peak_memory_bytes(record: dict[str, Any]) -> float | None:
    """The framework allocator's peak (host RSS and NVML's figures measure other things)."""
    return _finite(memory.allocator_peak_bytes(record))


def _host_peak_rss_bytes(record: dict[str, Any]) -> float | None:
    return _finite(memory.host_peak_rss_bytes(record))


def _energy_j_per_token(record: dict[str, Any]) -> float | None:
    """Energy per token over the measured windows, from the telemetry writer's derived figures
    (NVML's GPU energy, else RAPL's CPU package): "not available" without an energy counter."""
    return _finite(fields.energy_per_token_j(record))


def _excess_eval_loss_nats(record: dict[str, Any]) -> float | None:
    return _finite(fields.excess_eval_loss_nats(record))


def _time_to_target_s(record: dict[str, Any]) -> float | None:
    """Time to target (mode time_to_target): a run that missed the target has no estimate (the
    report gives the share of seeds that reached it)."""
    return _finite(quality.time_to_target_s(record)) if quality.reached(record) else None


def _tokens_to_target(record: dict[str, Any]) -> float | None:
    return _finite(quality.tokens_to_target(record)) if quality.reached(record) else None


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("tokens_per_s", "tokens/s", "tokens/s", True, False, _tokens_per_s),
        Metric("step_time_s", "step time", "s", False, False, _step_time_s),
        Metric("peak_memory_bytes", "peak memory", "B", False, True, _peak_memory_bytes),
        Metric("host_peak_rss_bytes", "host peak RSS", "B", False, True, _host_peak_rss_bytes),
        Metric("energy_j_per_token", "energy/token", "J/token", False, False, _energy_j_per_token),
        Metric(
            "excess_eval_loss_nats", "excess eval loss", "nats", False, True, _excess_eval_loss_nats
        ),
        Metric("time_to_target_s", "time to target", "s", False, False, _time_to_target_s),
        Metric("tokens_to_target", "tokens to target", "tokens", False, False, _tokens_to_target),
    )
}
DEFAULT_METRIC = "tokens_per_s"


def run_estimates(records: list[dict[str, Any]], metric: Metric) -> list[float]:
    """One estimate per `ok` record (run) that has the metric."""
    values = (metric.estimate(record) for record in records)
    return [v for v in values if v is not None]
