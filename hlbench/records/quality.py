"""What a record says about quality and training health: the time-to-target section (`quality`,
hlbench.worker.quality), the health section of every cell (`health`, hlbench.worker.health) and the
repeat's seed. None where the record does not say (fixed-steps mode, an older record, a failure).
"""

from __future__ import annotations

from typing import Any

from hlbench.records.fields import number
from hlbench.records.identity import Record, cell, lookup


def _quality(record: Record) -> Record:
    section = record.get("quality")
    return section if isinstance(section, dict) else {}


def _health(record: Record) -> Record:
    section = record.get("health")
    return section if isinstance(section, dict) else {}


def train_seed(record: Record) -> int | None:
    """The seed of the initial weights and the data order: the repeat's (measurement.seeds), else
    the cell's."""
    seed = cell(record).get("init_seed", cell(record).get("seed"))
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def is_time_to_target(record: Record) -> bool:
    return _quality(record).get("mode") == "time_to_target"


def reached(record: Record) -> bool | None:
    value = _quality(record).get("reached")
    return value if isinstance(value, bool) else None


def target(record: Record) -> tuple[str, float] | None:
    """(kind, value): ("excess_nats", 0.05) or ("eval_loss", 1.2)."""
    kind, value = lookup(record, "quality", "target", "kind"), lookup(record, "quality", "target")
    value = number(value.get("value")) if isinstance(value, dict) else None
    return (kind, value) if isinstance(kind, str) and value is not None else None


def target_label(record: Record) -> str | None:
    found = target(record)
    if found is None:
        return None
    kind, value = found
    return f"excess ≤ {value:g} nats" if kind == "excess_nats" else f"eval loss ≤ {value:g}"


def parse_target_label(label: Any) -> tuple[str, float] | None:
    """(kind, value) back from a `target_label` (the results table keeps the label only)."""
    if not isinstance(label, str):
        return None
    for kind, prefix, suffix in (
        ("excess_nats", "excess ≤ ", " nats"),
        ("eval_loss", "eval loss ≤ ", ""),
    ):
        if label.startswith(prefix) and label.endswith(suffix):
            value = _number_text(label[len(prefix) : len(label) - len(suffix)])
            return (kind, value) if value is not None else None
    return None


def _number_text(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _q(record: Record, name: str) -> float | None:
    return number(_quality(record).get(name))


def time_to_target_s(record: Record) -> float | None:
    """Training time to the first eval at the target (warmup and windows, synced; evals out)."""
    return _q(record, "time_to_target_s")


def steps_to_target(record: Record) -> float | None:
    return _q(record, "steps_to_target")


def tokens_to_target(record: Record) -> float | None:
    """Steps to target × global batch × sequence length: the hardware-independent figure."""
    return _q(record, "tokens_to_target")


def eval_s_total(record: Record) -> float | None:
    return _q(record, "eval_s_total")


def best_excess_nats(record: Record) -> float | None:
    return _q(record, "best_excess_nats")


def final_excess_nats(record: Record) -> float | None:
    return _q(record, "final_excess_nats")


def best_eval_loss(record: Record) -> float | None:
    return _q(record, "best_eval_loss")


def stopped_by(record: Record) -> str | None:
    value = _quality(record).get("stopped_by")
    return value if isinstance(value, str) else None


def energy_to_target_j(record: Record) -> float | None:
    """Energy over the windows up to the target (NVML's GPU counter, else RAPL's package)."""
    section = lookup(record, "telemetry", "to_target")
    if not isinstance(section, dict):
        return None
    return next(
        (
            number(section.get(k))
            for k in ("gpu_energy_j", "host_rapl_energy_j")
            if number(section.get(k)) is not None
        ),
        None,
    )


def eval_curve(record: Record) -> dict[str, list[Any]]:
    """The eval curve as columns: step, tokens, train_time_s, eval_s, eval_loss, excess_nats."""
    curve = _quality(record).get("eval_curve")
    if not isinstance(curve, dict):
        return {}
    return {k: v for k, v in curve.items() if isinstance(v, list)}


# --------------------------------------------------------------------------------------------------
# Training health (every mode)


def grad_norm_per_step(record: Record) -> list[float | None]:
    """Each step's gradient norm before clipping, warmup included; None where it was not finite."""
    values = _health(record).get("grad_norm_per_step")
    return [number(v) for v in values] if isinstance(values, list) else []


def grad_norm_median(record: Record) -> float | None:
    return number(_health(record).get("grad_norm_median"))


def grad_norm_max(record: Record) -> float | None:
    return number(_health(record).get("grad_norm_max"))


def clipped_fraction(record: Record) -> float | None:
    """The share of finite steps whose gradient was clipped."""
    return number(_health(record).get("clipped_fraction"))


def _count(record: Record, name: str) -> int | None:
    values = _health(record).get(name)
    return len(values) if isinstance(values, list) else None


def nonfinite_grad_steps(record: Record) -> int | None:
    return _count(record, "nonfinite_grad_steps")


def nonfinite_loss_steps(record: Record) -> int | None:
    return _count(record, "nonfinite_loss_steps")


def loss_spikes(record: Record) -> int | None:
    """Steps above the median of the previous steps by the rule in health.loss_spike_rule."""
    return _count(record, "loss_spike_steps")


# --------------------------------------------------------------------------------------------------
# The results table's columns (hlbench.results)

COLUMNS: tuple[str, ...] = (
    *("train_seed", "target", "reached", "time_to_target_s", "steps_to_target"),
    *("tokens_to_target", "energy_to_target_j", "eval_s_total", "best_excess_nats"),
    *("final_excess_nats", "stopped_by"),
    *("grad_norm_median", "grad_norm_max", "clipped_fraction", "nonfinite_grad_steps"),
    *("nonfinite_loss_steps", "loss_spikes"),
)


def row_figures(record: Record) -> dict[str, Any]:
    """A results row's time-to-target (None in fixed-steps mode) and training-health figures, and
    the raw eval curve (a RAW_COLUMNS entry, `eval_curve`)."""
    return {
        "train_seed": train_seed(record),
        "target": target_label(record),
        "reached": reached(record),
        "time_to_target_s": time_to_target_s(record),
        "steps_to_target": steps_to_target(record),
        "tokens_to_target": tokens_to_target(record),
        "energy_to_target_j": energy_to_target_j(record),
        "eval_s_total": eval_s_total(record),
        "best_excess_nats": best_excess_nats(record),
        "final_excess_nats": final_excess_nats(record),
        "stopped_by": stopped_by(record),
        "grad_norm_median": grad_norm_median(record),
        "grad_norm_max": grad_norm_max(record),
        "clipped_fraction": clipped_fraction(record),
        "nonfinite_grad_steps": nonfinite_grad_steps(record),
        "nonfinite_loss_steps": nonfinite_loss_steps(record),
        "loss_spikes": loss_spikes(record),
        "eval_curve": eval_curve(record),
    }
