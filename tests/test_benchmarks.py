"""The CPU overhead benchmarks still run against the current API (they import its internals), on
the smallest cell; their ratios are not checked here (a benchmark, not a timed test)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

TINY = ["--size", "tiny", "--seq-len", "8", "--batch-size", "2", "--steps", "2", "--warmup", "1"]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, str(REPO / "benchmarks" / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_the_torch_overhead_benchmark_runs():
    proc = _run("overhead.py", *TINY, "--trials", "1", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hlbench / bare" in proc.stdout


def test_the_tf_overhead_benchmark_runs_and_trains_like_hlbench():
    pytest.importorskip("tensorflow")
    proc = _run("tf_overhead.py", *TINY, "--trials", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # 1: losses disagree
    assert "tf / bare" in proc.stdout
