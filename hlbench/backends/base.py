"""The adapter protocol every backend implements. It names no backend.

A Backend turns a cell and its NumPy initial weights into a Trainer; hlbench.worker.train drives
every Trainer through the same framework-neutral loop, so the measurement is identical for all
backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from hlbench.backends.timers import StepTimer
from hlbench.cell import Cell
from hlbench.data import Batch
from hlbench.errors import SkipCell
from hlbench.techniques import oom, pruning
from hlbench.techniques.precision import Level
from hlbench.workloads import CustomSpec, ModelSpec


class Trainer(ABC):
    """One model + optimizer on one device, trained one optimizer step at a time.

    Data parallel (a cell with `launch`, hlbench.sweep.launch): every rank builds the same trainer
    from the same weights and is given the same global batches; the trainer trains its own rows of
    each batch (hlbench.data.Batch.shard) and combines gradients across ranks, so the optimization
    is the
    single-device one. `rank` 0 is the one whose result is written (the chief)."""

    rank: int = 0  # this process's rank among the processes of a data-parallel cell
    world_size: int = (
        1  # data-parallel replicas in all (may exceed the processes: TF's MirroredStrategy)
    )

    @abstractmethod
    def train_step(self, batch: Batch) -> Any:
        """One optimizer step over `batch` (the global batch; the trainer splits it into
        micro-batches).

        Returns the step's loss as a device-side handle: reading it would force a sync, so the loop
        converts all of them after the timed windows with `losses_to_floats`.
        """

    def gradients(self, batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        """The step's loss and its accumulated (unclipped) gradient over `batch`, keyed by neutral
        parameter name in the neutral layout, without changing the model or the optimizer.
        Parity checks use it; a backend without it cannot take part in them."""
        raise NotImplementedError(
            f"{type(self).__name__} does not expose gradients for parity checks"
        )

    def apply_masks(self, masks: dict[str, np.ndarray]) -> None:
        """Prune: multiply the named parameters (neutral layout masks, True = keep) and their AdamW
        moments by the masks now, and their gradients at every later step, so pruned weights stay
        exactly zero. A later call replaces the masks of the parameters it names."""
        raise NotImplementedError(f"{type(self).__name__} does not implement pruning")

    def prune_magnitude(self, names: list[str], sparsity: float) -> None:
        """A global magnitude pruning event over `names` (hlbench.techniques.pruning.
        magnitude_masks's rule, ties included), applied as apply_masks would. This default
        computes the masks in NumPy from `weights()`; a backend overrides it to select on its
        device (no host copy, no host sort)."""
        self.apply_masks(pruning.magnitude_masks(self.weights(), names, sparsity))

    def prune_structured(self, spec: ModelSpec, sparsity: float) -> None:
        """A structured event (pruning.structured_units's rule, ties included) on the trainer's
        `spec` (gpt or llama), applied as apply_masks would. This default scores the units in NumPy
        from `weights()`; a backend overrides it to score them on its device."""
        units = pruning.structured_units(spec, self.weights(), sparsity)
        self.apply_masks(pruning.structured_masks(spec, units))

    def prune_n_m(self, names: list[str]) -> None:
        """A 2:4 event over `names` (pruning.n_m_masks's rule, ties included), applied as
        apply_masks would; NumPy from `weights()` unless a backend selects on its device."""
        self.apply_masks(pruning.n_m_masks(self.weights(), names))

    def step_timer(self) -> StepTimer | None:
        """How the measured steps are timed on this trainer's device (hlbench.backends.timers);
        None: a device sync and a host clock read after every step (right for CPUs)."""
        return None

    def weights(self) -> dict[str, np.ndarray]:
        """The current parameters as float32 NumPy arrays, neutral names and layouts (parity
        checks)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not expose its weights for parity checks"
        )

    def profile_phases(self, batch: Batch) -> dict[str, float]:
        """One optimizer step over `batch`, timed phase by phase with a device sync around each
        (hlbench.profiling.phases.PHASES names them): seconds per phase. Only the profile pass calls
        it,
        after the measured windows; it trains like train_step but its loss is not recorded."""
        raise NotImplementedError(f"{type(self).__name__} does not implement the phase breakdown")

    def profile_trace(self, batch: Batch, out_dir: Path) -> dict[str, Any]:
        """One or two optimizer steps under the framework's profiler, trace files written under
        `out_dir`: {"trace_path", "top_ops", "op_self_s" (operator name -> self seconds),
        "notes"}."""
        raise NotImplementedError(f"{type(self).__name__} does not implement profiler traces")

    @abstractmethod
    def sync(self) -> None:
        """Block until all queued device work is finished (a no-op on a CPU)."""

    @abstractmethod
    def losses_to_floats(self, losses: list[Any]) -> list[float]: ...

    def grad_norms_to_floats(self) -> list[float] | None:
        """The global gradient norm of every train_step so far, before clipping (after fp16's
        unscaling), read back in one transfer after the windows (kept on the device until then, so
        no step syncs for it); NaN or inf where a gradient was not finite. None: not reported."""
        return None

    @abstractmethod
    def eval_loss(self, batches: list[Batch]) -> float:
        """Mean loss per target token over held-out batches, without training."""

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """`obj` (JSON-serialisable) from every process of the cell, in rank order; a collective, so
        every process must call it. One process: [obj]."""
        return [obj]

    def reset_peak_memory(self) -> None:
        """Start a new peak for the framework's allocator statistics (no-op where there are
        none)."""

    def memory(self) -> dict[str, Any]:
        """Framework memory figures, each key naming what it measures, in bytes."""
        return {}

    def info(self) -> dict[str, Any]:
        """What actually ran: resolved device, optimizer implementation, dtypes, ..."""
        return {}


class Backend(ABC):
    name: str

    def prepare(self, cell: Cell) -> None:
        """Called once per worker process before anything else touches the framework: process-wide
        setup that must precede the runtime's initialisation (a data-parallel cell's process group,
        tf.distribute strategy, logical devices)."""

    def shutdown(self) -> None:
        """Called once when the worker's cell is finished (ok or not): leave process groups
        cleanly."""

    def resolve_spec(self, cell: Cell, spec: ModelSpec) -> ModelSpec:
        """The spec the cell trains, complete: a custom or hf model's (hlbench.workloads.custom)
        is known only once this backend has built it, so a backend that builds them returns the
        built spec; the built-in workloads' specs are complete already."""
        if isinstance(spec, CustomSpec):
            raise SkipCell(f"the {self.name} backend does not build {spec.model} models")
        return spec

    @abstractmethod
    def environment(self, device: str) -> dict[str, Any]:
        """Framework versions and device facts (GPU name, driver, CUDA) for the record."""

    @abstractmethod
    def build(
        self, cell: Cell, spec: ModelSpec, level: Level, weights: dict[str, np.ndarray]
    ) -> Trainer:
        """A trainer for `cell` starting from exactly `weights`; raises SkipCell if it cannot run
        here. `spec` is the model the cell trains, already resolved by the loop (after a structured
        shrink: the smaller one), and `level` its precision level: a backend derives neither
        again."""

    def is_oom(self, exc: BaseException) -> bool:
        """Whether an exception means the device (or host) ran out of memory: by default the
        allocator messages both frameworks emit (hlbench.techniques.oom)."""
        return oom.is_oom(exc)
