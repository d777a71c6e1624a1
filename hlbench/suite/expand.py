"""A validated suite's matrix as cells: the product of workloads, backends and axis values, minus
the exclusions, each cell with its batch sizes resolved for its accumulation and ranks."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

from hlbench import workloads
from hlbench.axes import AXIS_NAMES
from hlbench.cell import Cell, DataRef, Measurement, ModelRef, Optimizer, Workload
from hlbench.errors import UsageError
from hlbench.suite.schema import SuiteConfig, WorkloadConfig

MAX_CELLS = 100_000
TECHNIQUE_AXES = ("pruning", "augmentation")  # axes whose values name settings (cell.techniques)


def excluded(rules: list[dict[str, Any]], values: dict[str, Any]) -> bool:
    """Whether an exclusion rule matches a cell's workload, backend and axis values."""

    def matches(rule: dict[str, Any]) -> bool:
        return all(values[k] in (v if isinstance(v, list) else [v]) for k, v in rule.items())

    return any(matches(rule) for rule in rules)


def check_size(path: Path, config: SuiteConfig) -> None:
    """Refuse a matrix of more than MAX_CELLS cells before building (or validating) any: a product
    of long lists is astronomically large."""
    axis_values = [getattr(config.axes, axis) for axis in AXIS_NAMES]
    total = math.prod(map(len, axis_values)) * len(config.workloads) * len(config.backends)
    if total > MAX_CELLS:
        raise UsageError(f"{path}: a matrix of {total} cells; a suite has at most {MAX_CELLS}")


def expand(
    path: Path,
    config: SuiteConfig,
    specs: list[workloads.ModelSpec],
    data: list[DataRef],
    techniques: dict[str, dict[str, dict[str, Any]]],
) -> list[Cell]:
    """Every cell of the matrix, in a fixed order: workload, backend, then the axes in AXES
    order."""
    cells = []
    axis_values = [getattr(config.axes, axis) for axis in AXIS_NAMES]
    check_size(path, config)
    workload_rows = zip(config.workloads, specs, data)
    for (w, spec, d), backend in itertools.product(workload_rows, config.backends):
        for combo in itertools.product(*axis_values):
            axes = dict(zip(AXIS_NAMES, combo))
            if excluded(config.exclude, {"workload": w.display_name, "backend": backend, **axes}):
                continue
            settings = {axis: techniques[axis][axes[axis]] for axis in TECHNIQUE_AXES}
            cells.append(make_cell(path, config, w, spec, d, backend, axes, settings))
    if not cells:
        raise UsageError(f"{path}: exclude: the rules exclude every cell of the matrix")
    return cells


def make_cell(
    path: Path,
    config: SuiteConfig,
    w: WorkloadConfig,
    spec: workloads.ModelSpec,
    data: DataRef,
    backend: str,
    axes: dict[str, Any],
    techniques: dict[str, dict[str, Any]],
) -> Cell:
    launch = config.launcher.for_backend(backend) if config.launcher else None
    ranks = launch.world_size if launch else 1
    global_batch, micro_batch = _batches(path, w, axes["accumulation"], ranks)
    workload = Workload(
        name=w.display_name,
        spec=ModelRef.from_dict(spec.to_dict()),
        data=data,
        seq_len=w.seq_len_for(spec),
        global_batch=global_batch,
        micro_batch=micro_batch,
        hold=w.hold,
        variable_length=w.variable_length,
    )
    measurement = Measurement.from_dict(config.measurement.model_dump())
    tokens_per_step = global_batch * workload.seq_len
    return Cell(
        workload=workload,
        backend=backend,
        device=config.device,
        axes=axes,
        measurement=measurement,
        optimizer=_optimizer(path, config, measurement, tokens_per_step),
        seed=config.seed,
        techniques=techniques,
        launch=launch,
    )


def _batches(path: Path, w: WorkloadConfig, k: int, ranks: int) -> tuple[int, int]:
    """(global batch, micro-batch per rank) of k accumulation steps over `ranks` ranks."""
    if w.hold == "micro":
        return w.batch_size * k * ranks, w.batch_size
    if w.batch_size % (k * ranks):
        what = f"{k} steps" + (f" × {ranks} ranks" if ranks > 1 else "")
        raise UsageError(
            f"{path}: axes.accumulation: {what} do not divide batch_size {w.batch_size} of "
            f"workload {w.display_name!r} (hold: global needs micro = global / (k × ranks)); "
            "exclude the pair or change one"
        )
    return w.batch_size, w.batch_size // (k * ranks)


def _optimizer(
    path: Path, config: SuiteConfig, measurement: Measurement, tokens_per_step: int
) -> Optimizer:
    """The cell's optimizer, a cosine schedule's decay length resolved to the cell's step budget
    (every step the cell may run: warmup and windows, or time to target's step budget) when the
    suite leaves it out, so the cell says exactly which rates it trains with."""
    opt = Optimizer.from_dict(config.optimizer.model_dump())
    if opt.lr_schedule == "constant" or opt.lr_decay_steps is not None:
        return opt
    budget = measurement.step_budget(tokens_per_step)
    if budget <= opt.lr_warmup_steps:
        raise UsageError(
            f"{path}: optimizer.lr_warmup_steps {opt.lr_warmup_steps} is not below the cell's "
            f"{budget} optimizer steps; shorten the warmup or set lr_decay_steps"
        )
    return dataclasses.replace(opt, lr_decay_steps=budget)
