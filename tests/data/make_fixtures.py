"""Regenerate the committed fixture records (run from the repo root: `python tests/data/make_fixtures.py`).

The records follow the schema the runner writes (the README's record table), with
numbers made up but plausible for a 2-core CPU, so the golden reports exercise every section:
- records.jsonl: a clean two-backend matrix (torch, tf) × precision × accumulation, two pruning methods,
  two repeats each, and a parity record;
- troubled.jsonl: oom / timeout / crashed / error / skipped cells, an unstable cell (window CV ≥ 10%),
  too few steps, a time budget hit, throttling, telemetry samples, and a resumed cell (an `error` record
  followed by the `ok` record that replaced it).
The output is deterministic (seeded); rerun only when the record schema changes, then update the goldens
with `HLBENCH_UPDATE_GOLDEN=1 python -m pytest tests/test_report.py`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RUN_ID = "20260101T000000Z-0001"
TROUBLED_RUN_ID = "20260102T000000Z-0002"

HOST = {
    "hostname": "ci", "os": "Linux 6.1", "machine": "x86_64", "cpu_model": "AMD EPYC",
    "cpu_logical_cores": 2, "cpu_physical_cores": 2, "cpu_affinity_cores": 2,
    "memory_total_bytes": 25276059648, "python": "3.11.7", "hlbench_version": "0.1.0",
    "hlbench_git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False, "reason": None},
    "numpy_version": "2.4.6",
}
FRAMEWORK = {
    "torch": {"framework": "torch", "torch_version": "2.13.0+cpu", "cuda_version": None, "cudnn_version": None, "gpus": []},
    "tf": {"framework": "tensorflow", "tensorflow_version": "2.21.0", "cuda_version": None, "gpus": []},
}
WORKLOADS = {
    "gpt-tiny": {"model": "gpt", "size": "tiny", "n_params": 120576, "flops_per_token": 748032.0},
    "lstm-tiny": {"model": "lstm", "size": "tiny", "n_params": 99328, "flops_per_token": 595968.0},
}


def cell_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def record(
    rng: np.random.Generator, *, run_id: str, suite: str, workload: str, backend: str, precision: str,
    accumulation: int, pruning: str, repeat: int, step_s: float, mem_bytes: float, excess: float,
    status: str = "ok", reason: str | None = None, steps: int = 10, windows: int = 3, jitter: float = 0.03,
    slow_window: float = 1.0, budget_hit: bool = False, sparsity: float | None = None,
    telemetry: Any = None, minute: int = 0,
) -> dict[str, Any]:
    axes = {"precision": precision, "accumulation": accumulation, "pruning": pruning}
    cell_id = f"{workload}/{backend}/{precision}/ga{accumulation}/{pruning}"
    w = WORKLOADS[workload]
    rec: dict[str, Any] = {
        "schema_version": 1, "run_id": run_id, "suite": suite, "suite_path": f"suites/{suite}.yaml",
        "suite_sha256": "0" * 64, "cell_id": cell_id, "cell_hash": cell_hash(workload, backend, axes),
        "repeat": repeat,
        "cell": {
            "workload": {"name": workload, "spec": {"model": w["model"], "size": w["size"]},
                         "data": {"kind": "markov", "vocab": 256, "branching": 8}, "seq_len": 32,
                         "global_batch": 8, "micro_batch": 8 // accumulation, "hold": "global",
                         "variable_length": False},
            "backend": backend, "device": "auto", "axes": axes,
            "measurement": {"warmup_steps": 2, "steps": steps, "windows": windows, "repeats": 2,
                            "budget_s": 20.0, "timeout_s": 120.0, "eval_batches": 2},
            "optimizer": {"name": "adamw", "lr": 0.001}, "seed": 0,
        },
        "started_at": f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T00:{minute:02d}:00+00:00",
        "status": status, "reason": reason, "error": None, "signal": None, "exit_code": None,
        "worker_wall_s": None, "log_path": None, "timing": None, "metrics": None, "loss": None,
        "memory": None, "backend_info": None, "telemetry": None,
        "env": {"host": HOST, "framework": FRAMEWORK[backend] if status != "skipped" else None},
    }
    if status != "ok":
        if status == "error":
            rec["error"] = {"type": "RuntimeError", "message": reason, "traceback_tail": []}
        return rec
    per_window = []
    for i in range(windows):
        factor = slow_window if i == 0 else 1.0
        per_window.append([round(float(step_s * factor * rng.lognormal(0.0, jitter)), 6) for _ in range(steps)])
    flat = np.concatenate(per_window)
    wall = float(flat.sum()) * 1.002
    tokens_per_step = 8 * 32
    losses = 5.55 - np.log1p(np.arange(2 + steps * windows)) * 0.04 + excess - 3.6
    rec["worker_wall_s"] = round(wall + 3.0, 4)
    rec["timing"] = {
        "warmup_step_times_s": [round(step_s * 40, 6), round(step_s * 1.4, 6)],
        "window_step_times_s": per_window,
        "window_wall_s": [round(sum(w) * 1.002, 6) for w in per_window],
        "budget_hit": budget_hit, "steps_planned": steps * windows, "steps_measured": steps * windows,
        "data_prep_s": 0.14, "build_s": 1.29, "startup_s": 2.2, "eval_s": 0.006,
    }
    q25, q50, q75 = np.percentile(flat, [25, 50, 75])
    rec["metrics"] = {
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_step * len(flat) / wall,
        "target_tokens_per_s": tokens_per_step * len(flat) / wall,
        "measured_wall_s": wall, "step_time_median_s": float(q50), "step_time_iqr_s": float(q75 - q25),
        "step_time_mean_s": float(flat.mean()),
    }
    rec["loss"] = {
        "train_loss_per_step": [round(float(x), 6) for x in losses],
        "final_train_loss": round(float(losses[-steps:].mean()), 6),
        "eval_loss": round(1.7158 + excess, 6), "entropy_floor_nats": 1.7158, "entropy_floor_reason": None,
        "excess_train_loss_nats": round(float(losses[-steps:].mean()) - 1.7158, 6),
        "excess_eval_loss_nats": round(excess, 6),
    }
    if backend == "torch":
        rec["memory"] = {"torch_cuda_max_allocated_bytes": None, "torch_cuda_max_reserved_bytes": None,
                         "framework_memory_reason": "PyTorch keeps no allocator statistics for the CPU; see host_peak_rss_bytes",
                         "host_peak_rss_bytes": int(mem_bytes)}
    else:
        rec["memory"] = {"tf_peak_bytes": int(mem_bytes), "host_peak_rss_bytes": int(mem_bytes * 5)}
    info: dict[str, Any] = {"device": "cpu", "n_params": w["n_params"], "flops_per_token": w["flops_per_token"],
                            "peak_flops_per_s": 6.7e10}
    if precision == "fp16":
        info["loss_scale"] = 65536.0
    if sparsity is not None:
        info["sparsity_global"] = sparsity
    rec["backend_info"] = info
    rec["telemetry"] = telemetry
    return rec


PRECISION_SLOWDOWN = {"torch": {"fp32": 1.0, "bf16": 3.2, "fp16": 2.7}, "tf": {"fp32": 1.0, "bf16": 1.04, "fp16": 1.1}}
PRECISION_LOSS = {"fp32": 0.0, "bf16": 0.004, "fp16": 0.003}


def clean_records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    out = []
    minute = 0
    for repeat in range(2):
        for workload, base_step, base_mem in (("gpt-tiny", 0.020, 330e6), ("lstm-tiny", 0.012, 300e6)):
            for backend in ("torch", "tf"):
                if workload == "lstm-tiny" and backend == "tf":
                    continue
                for precision in ("fp32", "bf16", "fp16"):
                    for accumulation in (1, 4):
                        step = base_step * PRECISION_SLOWDOWN[backend][precision] * (1.0 if accumulation == 1 else 1.18)
                        step *= 1.25 if backend == "tf" else 1.0
                        mem = base_mem * (0.4 if backend == "tf" else 1.0)
                        mem *= (1.0 if accumulation == 1 else 0.82) * (1.0 if precision == "fp32" else 1.06)
                        out.append(record(rng, run_id=RUN_ID, suite="fixture", workload=workload, backend=backend,
                                          precision=precision, accumulation=accumulation, pruning="none",
                                          repeat=repeat, step_s=step, mem_bytes=mem + repeat * 1e5,
                                          excess=3.6 + PRECISION_LOSS[precision] + (0.1 if workload == "lstm-tiny" else 0.0),
                                          minute=minute))
                        minute += 1
            if workload == "gpt-tiny":
                for pruning, excess, sparsity in (("magnitude", 3.71, 0.5), ("2:4", 3.76, 0.5)):
                    out.append(record(rng, run_id=RUN_ID, suite="fixture", workload=workload, backend="torch",
                                      precision="fp32", accumulation=1, pruning=pruning, repeat=repeat,
                                      step_s=base_step * 1.01, mem_bytes=base_mem * 1.01, excess=excess,
                                      sparsity=sparsity, minute=minute))
                    minute += 1
    return out


def parity_record() -> dict[str, Any]:
    return {
        "schema_version": 1, "kind": "parity", "run_id": RUN_ID, "suite": "fixture", "workload": "gpt-tiny",
        "precision": "fp32", "backends": ["torch", "tf"], "passed": True,
        "checks": [
            {"name": "initial_loss", "values": {"torch": 5.566621, "tf": 5.566622}, "rel_diff": 1.8e-7,
             "tolerance": 1e-6, "passed": True, "detail": "same weights, same batch"},
            {"name": "loss_after_20_steps", "values": {"torch": 5.0121, "tf": 5.0125}, "rel_diff": 8.0e-5,
             "tolerance": 1e-3, "passed": True, "detail": "short training tracks"},
        ],
        "env": {"host": HOST},
    }


def troubled_records() -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    common = dict(run_id=TROUBLED_RUN_ID, suite="troubled", workload="gpt-tiny", backend="torch", repeat=0,
                  mem_bytes=330e6, excess=3.6)
    # raw samples as hlbench.telemetry writes them: a CSV beside the records file, path relative to it
    samples_rel = "troubled.telemetry/fixture-r0.csv"
    csv_lines = ["t_monotonic_s,host_rss_bytes,host_cpu_pct,host_rapl_energy_j,gpu_index,gpu_mem_used_bytes"]
    csv_lines += [f"{100 + 0.1 * i:.3f},400000000,100.0,,0,{int(300e6 + 1e6 * min(i, 20))}" for i in range(40)]
    (HERE / samples_rel).parent.mkdir(exist_ok=True)
    (HERE / samples_rel).write_text("\n".join(csv_lines) + "\n")
    telemetry = {"interval_s": 0.1, "samples_path": samples_rel, "n_samples": 40,
                 "sources": {"host": True, "nvml": True, "rapl": False},
                 "derived": {"gpu_mem_used_peak_bytes": 320e6, "gpu_throttled_fraction": 0.25,
                             "gpu_throttle_reasons_seen": ["sw_power_cap"]},
                 "telemetry_status": {"host_rapl_energy_j": "no RAPL powercap interface"}}
    return [
        record(rng, precision="fp32", accumulation=1, pruning="none", step_s=0.02, minute=0,
               telemetry=telemetry, **common),
        record(rng, precision="fp32", accumulation=2, pruning="none", step_s=0.022, slow_window=1.6, minute=1, **common),
        record(rng, precision="fp32", accumulation=4, pruning="none", step_s=0.025, steps=2, windows=2,
               budget_hit=True, minute=2, **common),
        record(rng, precision="bf16", accumulation=1, pruning="none", step_s=0.0, status="skipped", minute=3,
               reason="precision 'bf16' is not implemented in the torch backend yet", **common),
        record(rng, precision="fp16", accumulation=1, pruning="none", step_s=0.0, status="oom", minute=4,
               reason="out of memory: tried to allocate 2.00 GiB", **common),
        record(rng, precision="fp32", accumulation=1, pruning="magnitude", step_s=0.0, status="timeout", minute=5,
               reason="no result within timeout_s=120 s; worker killed", **common),
        record(rng, precision="fp32", accumulation=1, pruning="structured", step_s=0.0, status="crashed", minute=6,
               reason="worker killed by SIGKILL (the kernel's OOM killer sends SIGKILL)", **common),
        # resumed: an error first, then the ok record that replaced it (the loader keeps the last)
        record(rng, precision="fp32", accumulation=1, pruning="2:4", step_s=0.0, status="error", minute=7,
               reason="RuntimeError: transient failure", **common),
        record(rng, precision="fp32", accumulation=1, pruning="2:4", step_s=0.0205, sparsity=0.5, minute=8,
               **{**common, "excess": 3.7}),
        {**parity_record(), "run_id": TROUBLED_RUN_ID, "suite": "troubled", "passed": False,
         "checks": [{"name": "initial_loss", "values": {"torch": 5.5666, "tf": 5.5912}, "rel_diff": 4.4e-3,
                     "tolerance": 1e-6, "passed": False, "detail": "different initial weights?"}]},
    ]


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


if __name__ == "__main__":
    write(HERE / "records.jsonl", clean_records())
    write(HERE / "parity.jsonl", [parity_record()])
    write(HERE / "troubled.jsonl", troubled_records())
