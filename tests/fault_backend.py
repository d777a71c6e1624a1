"""A backend for the runner's tests: a trivial NumPy "trainer" that can hang, die or fail on demand.

Registered through HLBENCH_BACKENDS (see hlbench.backends). The fault for a cell is chosen by its
accumulation value from the JSON map in HLBENCH_TEST_FAULTS, e.g. {"ga2": "hang"}.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from hlbench.backends import BackendSpec
from hlbench.backends.base import Backend, Trainer
from hlbench.cell import Cell
from hlbench.data import Batch

SPEC = BackendSpec(
    name="fault",
    framework="numpy",
    adapter="tests.fault_backend:FaultBackend",
    supports={"precision": frozenset({"fp32"}), "pruning": frozenset({"none"})},
)


class CountingTrainer(Trainer):
    """Loss = 1 / (1 + step): enough for the loop to measure something real and cheap."""

    def __init__(self, step_sleep_s: float) -> None:
        self.steps = 0
        self.step_sleep_s = step_sleep_s

    def train_step(self, batch: Batch) -> Any:
        time.sleep(self.step_sleep_s)
        self.steps += 1
        return np.float32(1.0 / self.steps)

    def sync(self) -> None:
        return None

    def losses_to_floats(self, losses: list[Any]) -> list[float]:
        return [float(x) for x in losses]

    def eval_loss(self, batches: list[Batch]) -> float:
        return 1.0


class FaultBackend(Backend):
    name = "fault"

    def environment(self, device: str) -> dict[str, Any]:
        # what a worker was given (the --devices tests check each saw only its own GPU)
        return {
            "framework": "fault",
            "pid": os.getpid(),
            "ppid": os.getppid(),  # the run, or the pre-imported worker it was forked from
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def build(self, cell: Cell, spec: Any, level: Any, weights: dict[str, np.ndarray]) -> Trainer:
        faults = json.loads(os.environ.get("HLBENCH_TEST_FAULTS", "{}"))
        mode = faults.get(f"ga{cell.axes['accumulation']}", "ok")
        if mode == "hang":
            # A grandchild too, to prove the timeout kills the worker's whole process group.
            child = subprocess.Popen(["sleep", "600"])
            Path(os.environ["HLBENCH_TEST_PIDFILE"]).write_text(f"{os.getpid()} {child.pid}")
            time.sleep(600)
        elif mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif mode == "oom":
            raise MemoryError("simulated: cannot allocate 80 GiB")
        elif mode == "raise":
            raise RuntimeError("simulated failure in build")
        elif mode == "exit":
            os._exit(3)
        return CountingTrainer(step_sleep_s=float(os.environ.get("HLBENCH_TEST_STEP_SLEEP_S", "0")))
