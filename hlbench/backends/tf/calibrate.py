"""A CPU GEMM timed in TensorFlow, for the peak FLOP/s MFU divides by on a CPU
(hlbench.telemetry.calibration calls it through hlbench.telemetry.peaks)."""

from __future__ import annotations

import time

import tensorflow as tf


def framework_version() -> str:
    return f"tensorflow {tf.__version__}"


def threads() -> str:
    return str(tf.config.threading.get_intra_op_parallelism_threads() or "default")


def gemm_best_time_s(dtype: str, shape: tuple[int, int, int], reps: int = 3) -> tuple[float, str]:
    """The best time of `reps` (m, k) × (k, n) matrix products in `dtype` ("float32", "bfloat16",
    "float16") on the CPU, each read back to the host (eager ops may return before the work is
    done), after one untimed product (allocation, kernel selection); and the intra-op thread
    setting."""
    m, k, n = shape
    with tf.device("/CPU:0"):
        a = tf.cast(tf.random.normal((m, k)), dtype)
        b = tf.cast(tf.random.normal((k, n)), dtype)
        tf.matmul(a, b).numpy()
        best_s = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            tf.matmul(a, b).numpy()
            best_s = min(best_s, time.perf_counter() - t0)
    return best_s, threads()
