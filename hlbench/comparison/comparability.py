"""Can two runs be compared at all? Loading a run, summarizing its environment, naming differences.

A timing comparison between an A100 and an H200, or between torch 2.4 and 2.5, measures the hardware
or the framework, not the change under test: `hlbench compare` refuses (exit 2) unless `--force`,
and says exactly which field differs. The fields that make a comparison meaningless:

- `schema_version` of the records;
- `gpu_models` (names of the GPUs the framework saw) and `driver_major` (NVIDIA driver major
  version);
- framework versions: `torch_version`, `tensorflow_version`, `cuda_version`, `cudnn_version`;
- `cpu_model`, for runs that saw no GPU (on a CPU the processor *is* the device under test);
- `worker_start`, forked from a pre-imported worker or spawned (HLBENCH_PREIMPORT=0): a forked
  worker's host RSS leaves out the import pages it never touches (about 40% less on TensorFlow);
- the workload definition: a cell id present on both sides with different content hashes (the same
  name now means another model, batch, optimizer ...): reported with the keys that differ.

A field known on one side and unknown (null) on the other cannot be checked: that is a warning, not
a refusal (e.g. a driver version recorded only since nvidia-ml-py was installed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hlbench.comparison.inputs import Run, load_run, records_file
from hlbench.records import environment as env
from hlbench.records import identity

__all__ = ["Differences", "Run", "differences", "environment", "load_run", "records_file"]

# Environment fields compared, in the order differences are reported.
ENV_FIELDS = (
    "schema_version",
    "gpu_models",
    "driver_major",
    "torch_version",
    "tensorflow_version",
    "cuda_version",
    "cudnn_version",
    "cpu_model",
    "worker_start",
)


def _driver_major(version: Any) -> str | None:
    return str(version).split(".")[0] if version else None


def record_environment(record: dict[str, Any]) -> dict[str, Any]:
    """The comparability fields of one record; None where the record does not say."""
    gpus = env.gpu_names(record)
    return {
        "schema_version": identity.schema_version(record),
        # A multiset of names, sorted: 2× H100 differs from 1× H100. None: the worker never
        # reported.
        "gpu_models": None if gpus is None else ", ".join(sorted(g or "?" for g in gpus)) or "none",
        "driver_major": _driver_major(env.driver_version(record)),
        "cpu_model": env.cpu_model(record),
        "worker_start": env.worker_start(record),
        **env.framework_versions(record),
    }


def environment(records: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Each field's distinct known values over a run's records (usually one each; [] when unknown).

    Records without a framework environment (skipped cells never start a worker) add only host
    fields.
    """
    values: dict[str, set[str]] = {key: set() for key in ENV_FIELDS}
    for record in records:
        for key, value in record_environment(record).items():
            if value is not None:
                values[key].add(str(value))
    return {key: sorted(v) for key, v in values.items()}


def _gpu_less(env: dict[str, list[str]]) -> bool:
    return env["gpu_models"] in ([], ["none"])


@dataclass(frozen=True)
class Differences:
    """What makes two runs incomparable (`fatal`) and what could not be checked (`warnings`)."""

    fatal: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _show(values: list[str]) -> str:
    return " | ".join(repr(v) for v in values) if values else "unknown"


def environment_differences(
    baseline: dict[str, list[str]], candidate: dict[str, list[str]]
) -> Differences:
    diff = Differences()
    for key in ENV_FIELDS:
        b, c = baseline.get(key, []), candidate.get(key, [])
        if key == "cpu_model" and not (_gpu_less(baseline) and _gpu_less(candidate)):
            continue  # with a GPU the host CPU is not the device under test
        if b == c:
            continue
        if not b or not c:
            diff.warnings.append(f"{key}: baseline {_show(b)} vs candidate {_show(c)}")
        else:
            diff.fatal.append(f"{key}: baseline {_show(b)} vs candidate {_show(c)}")
    return diff


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def definition_differences(
    baseline: Iterable[dict[str, Any]], candidate: Iterable[dict[str, Any]]
) -> list[str]:
    """Cell ids on both sides with different content hashes, and the `cell` keys that differ."""

    def by_id(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {identity.cell_id(r): r for r in records if identity.cell_id(r) is not None}

    base, cand = by_id(baseline), by_id(candidate)
    out = []
    for cell_id in base:
        b, c = base[cell_id], cand.get(cell_id)
        if c is None or identity.cell_hash(b) == identity.cell_hash(c):
            continue
        fb, fc = _flatten(identity.cell(b)), _flatten(identity.cell(c))
        keys = sorted(k for k in fb.keys() | fc.keys() if fb.get(k) != fc.get(k))
        shown = ", ".join(f"{k} {fb.get(k)!r} vs {fc.get(k)!r}" for k in keys[:4]) + (
            " ..." if len(keys) > 4 else ""
        )
        out.append(
            f"workload definition of {cell_id}: hash {identity.cell_hash(b)} vs "
            f"{identity.cell_hash(c)}" + (f" ({shown})" if shown else "")
        )
    return out


def differences(baseline: Run, candidate: Run) -> Differences:
    """Everything that stands between two runs and a meaningful comparison."""
    env = environment_differences(environment(baseline.records), environment(candidate.records))
    return Differences(
        env.fatal + definition_differences(baseline.records, candidate.records), env.warnings
    )
