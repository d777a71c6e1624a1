"""A CPU GEMM timed in TensorFlow, for the peak FLOP/s MFU divides by on a CPU
(hlbench.telemetry.peaks.cpu_gemm_flops calls it)."""

from __future__ import annotations

import time

import tensorflow as tf


def gemm_best_time_s(dtype: str, n: int, reps: int = 5) -> tuple[float, str]:
    """The best time of `reps` n×n matrix products in `dtype` ("float32", "bfloat16", "float16") on
    the CPU, each read back to the host (eager ops may return before the work is done), after one
    untimed product (allocation, kernel selection); and the intra-op thread setting."""
    with tf.device("/CPU:0"):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        tf.matmul(a, b).numpy()
        best_s = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            tf.matmul(a, b).numpy()
            best_s = min(best_s, time.perf_counter() - t0)
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    return best_s, str(threads)
