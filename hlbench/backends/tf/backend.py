"""The TensorFlow adapter (TFBackend): runtime configuration, devices, the record's environment,
and which trainer a cell gets.

A single-device cell gets hlbench.backends.tf.trainer.TFTrainer; a data-parallel cell (`launch`:
MirroredStrategy or MultiWorkerMirroredStrategy) gets hlbench.backends.tf.distribute's
MirroredTFTrainer, whose strategy TFBackend.prepare creates before the runtime initialises. What a
device or strategy cannot run is skipped with the reason (SkipCell), never a silent fallback.

Precision settings that are process-wide live here: TF32 is off unless the cell's level is tf32
(TensorFlow turns it on by default on Ampere and newer GPUs), and a level that needs a newer GPU
than the cell's skips it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import tensorflow as tf

from hlbench.backends import TF
from hlbench.backends.base import Backend
from hlbench.backends.tf import distribute, strategies
from hlbench.backends.tf.trainer import TFTrainer
from hlbench.cell import Cell
from hlbench.errors import SkipCell
from hlbench.techniques import oom, precision
from hlbench.workloads import CustomSpec, ModelSpec


def configure_runtime() -> None:
    """Settings that must precede TensorFlow's runtime initialisation (the first op or device query
    that creates a context): memory growth, without which TensorFlow reserves nearly all GPU memory
    at start and every memory figure measures the reservation instead of the training; and TF32
    off, because fp32 means fp32 and TensorFlow turns TF32 on by default on Ampere and newer
    GPUs."""
    for gpu in tf.config.list_physical_devices("GPU"):
        # RuntimeError: already initialised (in-process callers building a second trainer)
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.experimental.enable_tensor_float_32_execution(False)


def resolve_device(requested: str) -> str:
    """auto → the first GPU when TensorFlow sees one, else the CPU; an absent device skips the
    cell."""
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if requested == "cpu":
        return "/CPU:0"
    index = int(requested.partition(":")[2] or 0)  # cuda or cuda:N (the suite validated the form)
    if index >= len(gpus):
        raise SkipCell(f"device {requested!r} requested but TensorFlow sees {len(gpus)} GPU(s)")
    return f"/GPU:{index}"


def require_device_for(level: precision.Level, device: str) -> None:
    """SkipCell, with the reason, when `device` cannot run `level` (never a silent fallback)."""
    if level.min_cuda_capability is None:
        return
    capability, here = None, "cpu"
    if device.startswith("/GPU"):
        gpu = tf.config.list_physical_devices("GPU")[int(device.rpartition(":")[2])]
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        here = (
            f"{device} ({details.get('device_name')}, compute capability "
            f"{'.'.join(map(str, capability or ()))})"
        )
    if capability is None or tuple(capability) < level.min_cuda_capability:
        need = ".".join(map(str, level.min_cuda_capability))
        raise SkipCell(
            f"{level.name} needs an NVIDIA Ampere or newer GPU (compute capability ≥ {need}); "
            f"this cell's device is {here}"
        )


class TFBackend(Backend):
    name = "tf"

    def __init__(self) -> None:
        configure_runtime()
        # the strategy of a data-parallel cell, created by prepare
        self._distribution: strategies.Distribution | None = None

    def prepare(self, cell: Cell) -> None:
        """A data-parallel cell: create its tf.distribute strategy now, before any other op
        (logical CPU devices and MultiWorkerMirroredStrategy must precede the runtime's
        initialisation). Cells without `launch`, or with one this backend skips (build says why),
        need nothing."""
        if not cell.launch or self._distribution is not None:
            return
        if distribute.unsupported_reason(cell) is None:
            self._distribution = strategies.make_distribution(cell)

    def shutdown(self) -> None:
        if self._distribution is not None:
            strategies.shutdown_barrier(self._distribution)

    def environment(self, device: str) -> dict[str, Any]:
        build = tf.sysconfig.get_build_info()
        env: dict[str, Any] = {
            "framework": "tensorflow",
            "tensorflow_version": tf.__version__,
            "keras_version": _keras_version(),
            "cuda_version": build.get("cuda_version"),
            "cudnn_version": build.get("cudnn_version"),
            "gpus": [],
        }
        for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
            details = tf.config.experimental.get_device_details(gpu)
            capability = details.get("compute_capability")
            env["gpus"].append(
                {
                    "index": i,
                    "name": details.get("device_name"),
                    "capability": ".".join(map(str, capability)) if capability else None,
                }
            )
        return env

    def resolve_spec(self, cell: Cell, spec: ModelSpec) -> ModelSpec:
        """A custom Keras model: built here, with the cell's seed (hlbench.backends.tf.custom)."""
        if not isinstance(spec, CustomSpec):
            return spec
        from hlbench.backends.tf.custom import build_spec

        return build_spec(cell, spec, resolve_device(cell.device))

    def build(
        self, cell: Cell, spec: ModelSpec, level: precision.Level, weights: dict[str, np.ndarray]
    ) -> TFTrainer:
        reason = TF.unsupported_reason_for(cell)
        if reason:
            raise SkipCell(reason)
        if cell.launch:
            return self._build_distributed(cell, spec, level, weights)
        device = resolve_device(cell.device)
        require_device_for(level, device)
        tf.config.experimental.enable_tensor_float_32_execution(level.tf32)  # off at other levels
        return TFTrainer(cell, spec, level, weights, device)

    def _build_distributed(
        self, cell: Cell, spec: ModelSpec, level: precision.Level, weights: dict[str, np.ndarray]
    ) -> TFTrainer:
        """A trainer on mirrored variables (hlbench.backends.tf.distribute); SkipCell with the
        reason for what does not run under a strategy."""
        reason = distribute.unsupported_reason(cell)
        if reason:
            raise SkipCell(reason)
        self.prepare(cell)  # the worker has called it already; in-process callers may not have
        dist = self._distribution
        wanted = (cell.launch.strategy, int(cell.launch.world_size))
        if (dist.kind, dist.world_size) != wanted:
            raise RuntimeError(
                f"this process's strategy is {dist.kind} × {dist.world_size}; a process runs one "
                f"data-parallel shape (cell.launch {cell.launch})"
            )
        if dist.skip_reason:
            raise SkipCell(dist.skip_reason)
        require_device_for(level, dist.local_device)
        tf.config.experimental.enable_tensor_float_32_execution(level.tf32)
        return distribute.MirroredTFTrainer(cell, spec, level, weights, dist)

    def is_oom(self, exc: BaseException) -> bool:
        # the class, or one of the table's allocator messages (e.g. XLA's, wrapped in another error)
        return isinstance(exc, tf.errors.ResourceExhaustedError) or oom.is_oom(exc)


def _keras_version() -> str | None:
    try:
        import keras
    except ImportError:
        return None
    return keras.__version__
