#!/usr/bin/env python
"""Does telemetry slow training down? tokens/s of the same cell with telemetry on and off, in one
run.

Each trial runs the cell twice through `hlbench run` (a fresh worker each time, exactly as a suite
runs), once with the suite's telemetry (sampling every --interval-s) and once with --no-telemetry,
alternating which goes first. Printed: both tokens/s per trial, the per-trial ratio on/off and its
median (target >= 0.99). The sampler runs in the parent process and sleeps between samples, so what
this measures is its CPU time competing with the worker's.

A benchmark, not a test: exits 0 whatever the ratio (2 on bad arguments).

    python benchmarks/telemetry_overhead.py                     # torch gpt-small, 5 trials
    python benchmarks/telemetry_overhead.py --backend tf --interval-s 0.05
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 0.99
SUITE = """\
name: telemetry-overhead
device: {device}
backends: [{backend}]
workloads: [{{model: gpt, size: {size}, seq_len: 128, batch_size: 8}}]
measurement: {{warmup_steps: 3, steps: {steps}, windows: 2, eval_batches: 1, budget_s: 600,
timeout_s: 900}} telemetry: {{interval_s: {interval_s}}}
"""


def run_once(suite: Path, results: Path, telemetry: bool) -> float:
    cmd = [
        sys.executable,
        "-m",
        "hlbench",
        "run",
        str(suite),
        "--quiet",
        "--results-dir",
        str(results),
    ]
    if not telemetry:
        cmd.append("--no-telemetry")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    newest = max(results.rglob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    (record,) = [json.loads(line) for line in newest.read_text().splitlines()]
    if record["status"] != "ok":
        sys.exit(f"telemetry_overhead.py: the cell ended {record['status']}: {record['reason']}")
    assert (record["telemetry"] is not None) == telemetry
    return record["metrics"]["tokens_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", choices=["torch", "tf"])
    parser.add_argument("--size", default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--steps", type=int, default=40, help="optimizer steps per measured window (default: 40)"
    )
    parser.add_argument(
        "--interval-s", type=float, default=0.1, help="sampling interval (default: 0.1)"
    )
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hlbench-telemetry-overhead-") as tmp:
        suite = Path(tmp) / "suite.yaml"
        suite.write_text(SUITE.format(**vars(args)))
        print(
            f"gpt-{args.size} on {args.backend}, device {args.device}, sampling every "
            f"{args.interval_s} s; "
            f"{args.trials} trials alternating the order"
        )
        print(f"{'trial':>5}  {'on tok/s':>10}  {'off tok/s':>10}  {'on/off':>7}")
        ratios = []
        for trial in range(args.trials):
            order = (True, False) if trial % 2 == 0 else (False, True)
            tps = {flag: run_once(suite, Path(tmp) / "results", flag) for flag in order}
            ratios.append(tps[True] / tps[False])
            print(
                f"{trial + 1:>5}  {tps[True]:>10,.0f}  {tps[False]:>10,.0f}  {ratios[-1]:>7.3f}",
                flush=True,
            )
    median = statistics.median(ratios)
    print(
        f"telemetry on / off = {median:.3f} (median of per-trial ratios, span {min(ratios):.3f} … "
        f"{max(ratios):.3f}; target ≥ {TARGET}: {'meets' if median >= TARGET else 'BELOW'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
