"""Many records in the real writers' format, for scale benchmarks (benchmarks/report_scale.py).

The committed fixture records (records.jsonl, written by `hlbench run`; see make_fixtures.py) are
cloned under other workload names, accumulation and pruning values and repeats, with seeded jitter
on their step times, so that every field is one a writer produces.
"""

from __future__ import annotations

import copy
import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ACCUMULATIONS = (1, 2, 4, 8)
PRUNINGS = ("none", "magnitude", "2:4")


def _templates() -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    """The fixture's ok gpt-tiny records at 1 step, unpruned, per (backend, precision); and the
    `backend_info.pruning` sections of its pruned cells, per method."""
    records = [json.loads(line) for line in (HERE / "records.jsonl").read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok" and r["cell"]["workload"]["name"] == "gpt-tiny"]
    plain = {
        (r["cell"]["backend"], r["cell"]["axes"]["precision"]): r
        for r in ok
        if r["cell"]["axes"]["accumulation"] == 1 and r["cell"]["axes"]["pruning"] == "none"
    }
    pruned = {
        r["cell"]["axes"]["pruning"]: r["backend_info"]["pruning"]
        for r in ok
        if r["cell"]["axes"]["pruning"] != "none"
    }
    return plain, pruned


def _clone(
    template: dict[str, Any],
    workload: str,
    accumulation: int,
    pruning: str,
    pruning_section: dict[str, Any] | None,
    repeat: int,
    factor: float,
) -> dict[str, Any]:
    rec = copy.deepcopy(template)
    cell = rec["cell"]
    cell["workload"]["name"] = workload
    cell["workload"]["micro_batch"] = cell["workload"]["global_batch"] // accumulation
    cell["axes"].update(accumulation=accumulation, pruning=pruning)
    precision = cell["axes"]["precision"]
    rec["cell_id"] = f"{workload}/{cell['backend']}/{precision}/ga{accumulation}/{pruning}"
    rec["cell_hash"] = hashlib.sha256(rec["cell_id"].encode()).hexdigest()[:16]
    rec["repeat"] = repeat
    rec["suite"] = "scale"
    timing, metrics = rec["timing"], rec["metrics"]
    timing["window_step_times_s"] = [[t * factor for t in w] for w in timing["window_step_times_s"]]
    timing["window_wall_s"] = [w * factor for w in timing["window_wall_s"]]
    steps = [t for w in timing["window_step_times_s"] for t in w]
    metrics["measured_wall_s"] = sum(timing["window_wall_s"])
    metrics["tokens_per_s"] = metrics["tokens_per_step"] * len(steps) / metrics["measured_wall_s"]
    metrics["step_time_median_s"] = statistics.median(steps)
    metrics["step_time_mean_s"] = statistics.fmean(steps)
    rec["backend_info"]["pruning"] = pruning_section
    if pruning_section is not None:
        rec["loss"]["excess_eval_loss_nats"] += 0.1
    return rec


def synthetic_records(workloads: int, repeats: int, seed: int = 0) -> list[dict[str, Any]]:
    """workloads × 2 backends × 3 precisions × 4 accumulations × 3 prunings cells × repeats."""
    rng = np.random.default_rng(seed)
    plain, pruned = _templates()
    out = []
    for w in range(workloads):
        for (_, _), template in sorted(plain.items()):
            for accumulation in ACCUMULATIONS:
                for pruning in PRUNINGS:
                    for repeat in range(repeats):
                        factor = (1 + 0.05 * accumulation) * float(rng.lognormal(0.0, 0.02))
                        out.append(
                            _clone(
                                template,
                                f"gpt-w{w:02d}",
                                accumulation,
                                pruning,
                                pruned.get(pruning),
                                repeat,
                                factor,
                            )
                        )
    return out
