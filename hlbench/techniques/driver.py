"""Pruning during a cell's training: when to prune, at which sparsity, and what to record.

The training loop (hlbench.worker.train) calls `prepare` before building the trainer (a structured
`shrink` changes the architecture and the weights the backend loads), `before_step(i, trainer)`
between optimizer steps where `due(i)` (off the clock), and `report(trainer)` at the end. Masks
follow hlbench.techniques.pruning's definitions on the trainer's current weights in the neutral
layout, so every backend prunes the same weights: the masks are computed on the trainer's device
(Trainer.prune_magnitude, prune_structured, prune_n_m: the framework's own ops, the same tie rule;
the base Trainer's NumPy versions where a backend has none). The trainer is duck-typed here: this
module does not import the backends.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from hlbench.cell import Cell, ModelRef
from hlbench.errors import SkipCell
from hlbench.techniques import pruning as P
from hlbench.techniques import test_hooks
from hlbench.workloads import CustomSpec, ModelSpec


def pruning_for(cell: Cell) -> P.PruningConfig:
    return P.PruningConfig.from_dict(cell.techniques.get("pruning") or {"method": "none"})


class PruningRun:
    def __init__(self, cell: Cell, spec: ModelSpec) -> None:
        self.config = pruning_for(cell)
        self.spec = spec  # the model trained: a shrink replaces it with the smaller one
        self.full_spec = spec  # the model before any shrink
        self.n_params_before = spec.n_params
        self.events = set(self.config.event_steps(cell.measurement.warmup_steps))
        self.event_s: list[float] = []
        self.event_delay_s = test_hooks.prune_event_delay_s()
        self.shapes: dict[str, int] | None = None

    @property
    def active(self) -> bool:
        return self.config.method != "none"

    def prepare(
        self, cell: Cell, weights: dict[str, np.ndarray]
    ) -> tuple[Cell, ModelSpec, dict[str, np.ndarray]]:
        """For `shrink`: the cell, spec and weights of the physically smaller model (pruned at
        init)."""
        if self.config.method == "structured" and isinstance(self.spec, CustomSpec):
            raise SkipCell(
                "structured pruning removes attention heads and MLP neurons, which hlbench finds "
                f"only in its own workloads, not in a {self.spec.model} model (use magnitude, 2:4)"
            )
        if self.config.method == "structured" and self.spec.model not in P.STRUCTURED_MODELS:
            raise SkipCell(
                "structured pruning removes attention heads and MLP neurons; the "
                f"{self.spec.model} workload has neither (use magnitude or 2:4)"
            )
        if not self.config.shrink:
            return cell, self.spec, weights
        if self.config.schedule != "oneshot" or self.config.at != "init":
            raise ValueError(
                "shrink removes units once, from the initial weights: use schedule oneshot, at init"
            )
        full = self.spec
        units = P.structured_units(full, weights, self.config.sparsity)
        small_weights = P.shrink_weights(full, weights, units)
        self.shapes = P.shrunk_shapes(full, units)
        self.spec = P.shrunk_spec(full, units)
        self.events = set()  # nothing left to mask: the pruned units no longer exist
        workload = dataclasses.replace(cell.workload, spec=ModelRef.from_dict(self.spec.to_dict()))
        return dataclasses.replace(cell, workload=workload), self.spec, small_weights

    def spec_before(self) -> ModelSpec:
        return self.full_spec

    def due(self, step: int) -> bool:
        """Whether a pruning event comes before optimizer step `step`."""
        return step in self.events

    def before_step(self, step: int, trainer: Any) -> None:
        """The event due before `step`, if any: masks computed and applied. The loop runs it
        between steps, off the clock (hlbench.worker.measure.Events)."""
        if step not in self.events:
            return
        t0 = time.perf_counter()
        sparsity = self.config.sparsity_at(step)
        # each on the trainer's device where it can (the NumPy rules, the same selection)
        if self.config.method == "magnitude":
            trainer.prune_magnitude(P.prunable(self.spec), sparsity)
        elif self.config.method == "2:4":
            trainer.prune_n_m(P.prunable(self.spec))
        else:
            trainer.prune_structured(self.spec, sparsity)
        if self.event_delay_s:  # test-only (hlbench.techniques.test_hooks)
            time.sleep(self.event_delay_s)
        self.event_s.append(time.perf_counter() - t0)

    def report(self, trainer: Any) -> dict[str, Any] | None:
        if not self.active:
            return None
        weights = trainer.weights()
        measured = P.sparsity_report(self.spec, weights, self.config)
        if self.config.shrink:
            measured.update(self.shrunk_sparsity())
            execution = "shrunk dense model"
        else:
            execution = trainer.info().get("sparse_execution", "dense kernels with masks")
        two_four = self.config.method == "2:4"
        return {
            "method": self.config.method,
            "description": P.describe(self.config),
            "target_sparsity": P.expected_sparsity(self.spec_before(), self.config),
            **measured,
            "n_params_before": self.n_params_before,
            "shrink_shapes": self.shapes,
            "n_m_holds": P.check_n_m(weights, P.prunable(self.spec)) if two_four else None,
            # masks: zeros stored in dense kernels (no speedup expected from dense matmuls);
            # shrink: a smaller dense model; semi-structured: sparse kernels (CUDA only)
            "execution": execution,
            # wall time of each pruning event (mask computation and application), outside the
            # timed steps (the loop's synced figures: timing.technique_events)
            "event_s": self.event_s,
        }

    def shrunk_sparsity(self) -> dict[str, Any]:
        """Nothing is zero in a shrunk model: its sparsity is the share of the pruned kernels
        removed, per layer and overall."""
        before, after = self.spec_before().param_shapes(), self.spec.param_shapes()
        names = [n for n in P.prunable(self.spec_before()) if n.startswith("h.")]

        def size(shape: Any) -> int:
            return int(np.prod(shape))

        kept = sum(size(after[n]) for n in names) / sum(size(before[n]) for n in names)
        return {
            "sparsity_per_layer": {n: 1.0 - size(after[n]) / size(before[n]) for n in names},
            "sparsity_global": 1.0 - kept,
        }
