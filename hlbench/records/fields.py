"""What a cell record measured, field by field: speed, loss, energy, efficiency, techniques,
profile.

Each accessor reads the place the writers put the figure (hlbench.worker.train and the backends for
`timing`, `metrics`, `loss`, `backend_info`; hlbench.telemetry.collect for `telemetry`; the
profiling pass for `profile`) and returns None where the record does not say: an older backend, no
telemetry, a failed cell. Never a guess. Memory has its own module (hlbench.records.memory).
"""

from __future__ import annotations

from typing import Any

from hlbench.records.identity import Record, batch_shape, lookup


def number(value: Any) -> float | None:
    """A JSON number as a float; None for null, booleans and anything else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _metric(record: Record, name: str) -> float | None:
    return number(lookup(record, "metrics", name))


def _timing(record: Record) -> Record:
    return record.get("timing") or {}


# --------------------------------------------------------------------------------------------------
# Speed


def measured_windows_s(record: Record) -> list[list[float]]:
    """The measured windows' step times (warmup excluded), one list per window that ran a step."""
    windows = [
        [float(t) for t in w if number(t) is not None and t > 0]
        for w in _timing(record).get("window_step_times_s") or []
    ]
    return [w for w in windows if w]


def step_times_s(record: Record) -> list[float]:
    """Every measured step's time, windows in order."""
    return [t for window in measured_windows_s(record) for t in window]


def tokens_per_step(record: Record) -> int | None:
    """Global batch × sequence length: the tokens one optimizer step trains on, padding included."""
    recorded = lookup(record, "metrics", "tokens_per_step")
    if recorded is not None:
        return recorded
    shape = batch_shape(record)  # a failed or skipped record has no metrics; its cell says
    return (
        shape["global_batch"] * shape["seq_len"]
        if shape["global_batch"] and shape["seq_len"]
        else None
    )


def tokens_per_s(record: Record) -> float | None:
    """Tokens per step × measured steps / the windows' wall time: the one tokens/s every tool
    shows and compare decides on (a median of per-step tokens/s would be another number)."""
    return _metric(record, "tokens_per_s")


def target_tokens_per_s(record: Record) -> float | None:
    """Trained-on positions per second (below tokens_per_s with variable-length sequences)."""
    return _metric(record, "target_tokens_per_s")


def step_time_median_s(record: Record) -> float | None:
    return _metric(record, "step_time_median_s")


def step_time_iqr_s(record: Record) -> float | None:
    return _metric(record, "step_time_iqr_s")


def step_time_mean_s(record: Record) -> float | None:
    return _metric(record, "step_time_mean_s")


def measured_wall_s(record: Record) -> float | None:
    return _metric(record, "measured_wall_s")


def steps_measured(record: Record) -> int | None:
    timing = _timing(record)
    if not timing:
        return None
    return first(
        timing.get("steps_measured"),
        len(step_times_s(record)) if measured_windows_s(record) else None,
    )


def tokens_measured(record: Record) -> float | None:
    """Tokens trained in the measured windows."""
    tokens, steps = lookup(record, "metrics", "tokens_per_step"), steps_measured(record)
    return float(tokens * steps) if tokens and steps else None


def windows_measured(record: Record) -> int | None:
    return len(measured_windows_s(record)) if _timing(record) else None


def steps_planned(record: Record) -> int | None:
    return _timing(record).get("steps_planned")


def budget_hit(record: Record) -> bool | None:
    return _timing(record).get("budget_hit")


def startup_s(record: Record) -> float | None:
    """Build and warmup: what a cell costs before its first measured step."""
    return number(_timing(record).get("startup_s"))


def window_monotonic_s(record: Record) -> list[list[float]]:
    """[start, end] of each measured window on time.monotonic(), the telemetry samples' clock."""
    return _timing(record).get("window_monotonic_s") or []


def window_spans_s(record: Record) -> list[tuple[float, float]]:
    """The windows of `window_monotonic_s` that are two numbers, as (start, end); others dropped."""
    windows = window_monotonic_s(record)
    pairs = (
        [w[:2] for w in windows if isinstance(w, list) and len(w) >= 2]
        if isinstance(windows, list)
        else []
    )
    spans = [(number(a), number(b)) for a, b in pairs]
    return [(a, b) for a, b in spans if a is not None and b is not None]


def worker_wall_s(record: Record) -> float | None:
    """The worker process's whole life, import and startup included."""
    return number(record.get("worker_wall_s"))


# --------------------------------------------------------------------------------------------------
# Loss (nats per token)


def _loss(record: Record, name: str) -> float | None:
    return number(lookup(record, "loss", name))


def final_train_loss_nats(record: Record) -> float | None:
    """Mean train loss over the last measured window's steps."""
    return _loss(record, "final_train_loss")


def eval_loss_nats(record: Record) -> float | None:
    return _loss(record, "eval_loss")


def entropy_floor_nats(record: Record) -> float | None:
    """The data's entropy rate: the loss a perfect model reaches (known for Markov data)."""
    return _loss(record, "entropy_floor_nats")


def excess_train_loss_nats(record: Record) -> float | None:
    return _loss(record, "excess_train_loss_nats")


def excess_eval_loss_nats(record: Record) -> float | None:
    """Eval loss above the entropy floor: the quality figure comparable across models."""
    return _loss(record, "excess_eval_loss_nats")


def train_loss_per_step_nats(record: Record) -> list[float | None]:
    """Every step's train loss, warmup included; None where a step's loss was not finite."""
    return list(lookup(record, "loss", "train_loss_per_step") or [])


# --------------------------------------------------------------------------------------------------
# Energy, from the telemetry writer's derived figures over the measured windows


# (energy, energy per token, what it measures) in telemetry.derived, best first: NVML's GPU energy,
# then RAPL's CPU package energy where there is no GPU figure.
ENERGY_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("gpu_energy_j", "gpu_energy_per_token_j", "GPU (NVML)"),
    ("host_rapl_energy_j", "host_rapl_energy_per_token_j", "CPU package (RAPL)"),
)


def _derived(record: Record) -> Record:
    return lookup(record, "telemetry", "derived") or {}


def energy_j(record: Record) -> float | None:
    """Energy over the measured windows, joules; None without an energy counter."""
    derived = _derived(record)
    return first(*(number(derived.get(total)) for total, _, _ in ENERGY_SOURCES))


def energy_per_token_j(record: Record) -> float | None:
    """Energy per token trained in the measured windows, joules."""
    derived = _derived(record)
    for total, per_token, _ in ENERGY_SOURCES:
        energy = number(derived.get(total))
        if energy is None:
            continue
        tokens = tokens_measured(record)
        return first(number(derived.get(per_token)), energy / tokens if tokens else None)
    return None


def energy_source(record: Record) -> str | None:
    """What energy_j measures: "GPU (NVML)" or "CPU package (RAPL)"."""
    derived = _derived(record)
    return next(
        (what for total, _, what in ENERGY_SOURCES if number(derived.get(total)) is not None), None
    )


def throttled(record: Record) -> bool | None:
    """Whether telemetry saw the GPU throttled during the measured windows; None: not observed."""
    fraction = number(_derived(record).get("gpu_throttled_fraction"))
    return None if fraction is None else fraction > 0


def telemetry_samples_path(record: Record) -> str | None:
    """The raw samples CSV, relative to the records file's directory."""
    return lookup(record, "telemetry", "samples_path")


# --------------------------------------------------------------------------------------------------
# Efficiency and techniques


def flops_per_token(record: Record) -> float | None:
    """Training FLOPs per token of the model as built (a shrunk model's, after pruning)."""
    return number(lookup(record, "backend_info", "flops_per_token"))


def mfu(record: Record) -> float | None:
    """Model FLOPs utilisation: tokens/s × flops_per_token / mfu_peak_flops (per device)."""
    return _metric(record, "mfu")


def mfu_peak_flops(record: Record) -> float | None:
    """The device's peak the MFU is against (datasheet for GPUs, a GEMM calibration for CPUs)."""
    return _metric(record, "mfu_peak_flops")


def mfu_dtype(record: Record) -> float | None:
    """MFU against the peak of the cell's own precision (the second figure beside `mfu`)."""
    return _metric(record, "mfu_dtype")


def mfu_flag(record: Record) -> str | None:
    """Why MFU is not reported although it was computed: above 100%, a calibration problem."""
    flag = lookup(record, "metrics", "mfu_flag")
    return flag if isinstance(flag, str) else None


def technique_events(record: Record) -> list[tuple[str, float]]:
    """(technique, seconds) of every event a technique ran between steps, off the clock."""
    events = _timing(record).get("technique_events")
    if not isinstance(events, list):
        return []
    return [
        (str(e.get("technique")), float(e["s"]))
        for e in events
        if isinstance(e, dict) and number(e.get("s")) is not None
    ]


def n_params(record: Record) -> int | None:
    return lookup(record, "backend_info", "n_params")


def sparsity(record: Record) -> float | None:
    """Achieved sparsity over the kernels the pruning method prunes; None without pruning."""
    return number(lookup(record, "backend_info", "pruning", "sparsity_global"))


def loss_scale(record: Record) -> float | None:
    """fp16's dynamic loss scale at the end of the cell; None at levels without loss scaling."""
    return number(lookup(record, "backend_info", "loss_scale_final"))


def overflow_skipped_steps(record: Record) -> int | None:
    """Optimizer steps the loss scaler skipped for non-finite gradients."""
    return lookup(record, "backend_info", "overflow_skipped_steps")


# --------------------------------------------------------------------------------------------------
# The profiling pass (hlbench.profiling); None without profiling


def _profile(record: Record) -> Record:
    profile = record.get("profile")
    return profile if isinstance(profile, dict) else {}


def phase_shares(record: Record) -> dict[str, Any]:
    return _profile(record).get("phase_shares") or {}


def category_shares(record: Record) -> dict[str, Any]:
    return _profile(record).get("category_shares") or {}


def profile_step_s(record: Record) -> float | None:
    return number(_profile(record).get("step_s"))


def profile_trace_path(record: Record) -> str | None:
    return _profile(record).get("trace_path")
