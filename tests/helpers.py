"""What several test modules share (pytest fixtures stay in conftest.py): the repository's path, the
CLI as a user runs it, trainers built as the worker builds them, suite YAML, and synthetic records
in
the shape the writers produce, for the statistics tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.stats import norm

REPO = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`hlbench ARGS` as a user runs it, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "hlbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def build_trainer(backend: Any, cell: Any, weights: dict[str, np.ndarray] | None = None) -> Any:
    """`backend.build` as the worker calls it: the cell's resolved model and precision level, and
    its NumPy initial weights unless given."""
    from hlbench.techniques import precision
    from hlbench.workloads import model_spec

    spec = model_spec(cell)
    if weights is None:
        weights = spec.init_weights(cell.seed)
    return backend.build(cell, spec, precision.level(cell.axes["precision"]), weights)


TINY_WORKLOAD = {"model": "gpt", "size": "tiny", "seq_len": 8, "batch_size": 4}
SHORT_MEASUREMENT = {"warmup_steps": 1, "steps": 2, "windows": 2, "eval_batches": 1}


def suite_yaml(**sections: Any) -> str:
    """A suite file's text, section by section in the order given (a value of None leaves the
    section out); by default the torch backend on the CPU, a tiny gpt workload and a short
    measurement. Leaf lists and mappings come out in flow style (`axes: {accumulation: [1, 2]}`), as
    a person writes them, so a test may still `.replace()` one value."""
    defaults: dict[str, Any] = {
        "backends": ["torch"],
        "device": "cpu",
        "workloads": [TINY_WORKLOAD],
        "measurement": SHORT_MEASUREMENT,
    }
    suite = {key: value for key, value in {**defaults, **sections}.items() if value is not None}
    order = list(sections) + [key for key in defaults if key not in sections]
    ordered = {key: suite[key] for key in order if key in suite}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=1000)


# ------------------------------------------------------------------------------------------------
# Synthetic records for the statistics of compare and baseline

TOKENS_PER_STEP = 256
H200, A100 = "NVIDIA H200", "NVIDIA A100-SXM4-80GB"


def lognormal(n: int, median: float, sigma: float, seed: int) -> list[float]:
    return list(median * np.exp(sigma * np.random.default_rng(seed).standard_normal(n)))


def lognormal_quantiles(n: int, median: float, sigma: float) -> list[float]:
    """Deterministic 'samples': the n evenly spaced quantiles of a lognormal (no seed luck)."""
    return list(median * np.exp(sigma * norm.ppf((np.arange(n) + 0.5) / n)))


def record(
    tokens_per_s: list[float] | None = None,
    cell_id: str = "gpt-small/torch/fp32/ga1/none",
    cell_hash: str = "aaaaaaaaaaaaaaaa",
    repeat: int = 0,
    status: str = "ok",
    gpus: list[str] | None = None,
    driver: str | None = "550.54.15",
    torch_version: str = "2.5.1+cu124",
    cpu_model: str = "AMD EPYC 9654",
    schema_version: int = 1,
    seq_len: int = 128,
    peak_bytes: int | None = 2**30,
    **extra: Any,
) -> dict[str, Any]:
    """A record with the fields compare reads; per-step times derived from the wanted tokens/s."""
    rec = {
        "schema_version": schema_version,
        "run_id": "r",
        "suite": "ci-gpu",
        "cell_id": cell_id,
        "cell_hash": cell_hash,
        "repeat": repeat,
        "status": status,
        "reason": None if status == "ok" else f"{status} in test",
        "cell": {
            "workload": {"name": cell_id.split("/")[0], "seq_len": seq_len},
            "backend": "torch",
            "axes": {"precision": "fp32", "accumulation": 1, "pruning": "none"},
        },
        "timing": None,
        "metrics": None,
        "memory": None,
        "loss": None,
        "telemetry": None,
        "env": environment_section(
            [H200] if gpus is None else gpus, driver, torch_version, cpu_model
        ),
    }
    if status == "ok":
        rec.update(measured_sections([TOKENS_PER_STEP / x for x in tokens_per_s or []], peak_bytes))
    return {**rec, **extra}


def environment_section(
    gpus: list[str], driver: str | None, torch_version: str, cpu_model: str
) -> dict[str, Any]:
    framework = {
        "framework": "torch",
        "torch_version": torch_version,
        "cuda_version": "12.4",
        "gpus": [{"index": i, "name": g} for i, g in enumerate(gpus)],
        "driver_version": driver,
    }
    host = {"cpu_model": cpu_model, "hlbench_version": "0.1.0", "hlbench_git": None}
    return {"host": host, "framework": framework}


def measured_sections(steps: list[float], peak_bytes: int | None) -> dict[str, Any]:
    """timing, metrics, memory and loss of an ok record: two windows of the given step times."""
    half = len(steps) // 2
    return {
        "timing": {
            "window_step_times_s": [steps[:half], steps[half:]],
            "steps_measured": len(steps),
        },
        "metrics": {
            "tokens_per_step": TOKENS_PER_STEP,
            "tokens_per_s": TOKENS_PER_STEP * len(steps) / sum(steps),
        },
        "memory": {"torch_cuda_max_allocated_bytes": peak_bytes, "host_peak_rss_bytes": 5 * 2**30},
        "loss": {"excess_eval_loss_nats": 0.25},
    }


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


STEADY = lognormal(60, 10_000.0, 0.02, seed=11)


def runs_at(
    run_tokens_per_s: list[float],
    seed: int = 0,
    step_sigma: float = 0.01,
    steps: int = 30,
    run_id: str = "r",
    **record_kw: Any,
) -> list[dict[str, Any]]:
    """One ok record per run (repeat = 0, 1, …), run i's steps scattered (lognormal, step_sigma)
    around its own speed run_tokens_per_s[i]: the steps of a run share its offset, as the steps of
    one worker process do."""
    rng = np.random.default_rng(seed)
    return [
        record(
            list(speed * np.exp(step_sigma * rng.standard_normal(steps))),
            repeat=i,
            run_id=run_id,
            **record_kw,
        )
        for i, speed in enumerate(run_tokens_per_s)
    ]


def runs(
    n: int,
    median_tokens_per_s: float,
    run_sigma: float,
    seed: int,
    step_sigma: float = 0.01,
    steps: int = 30,
    **record_kw: Any,
) -> list[dict[str, Any]]:
    """n runs of one cell (repeat = 0..n-1), each with its own lognormal offset (run_sigma) around
    median_tokens_per_s and per-step samples around that offset (see runs_at); record_kw (run_id,
    cell_id, cell_hash, gpus, peak_bytes, …) go to every record."""
    offsets = lognormal(n, median_tokens_per_s, run_sigma, seed)
    return runs_at(offsets, seed + 10_000, step_sigma, steps, **record_kw)
