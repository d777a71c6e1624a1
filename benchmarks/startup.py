#!/usr/bin/env python
"""What does a cell's process start cost? A suite's wall time with pre-imported workers (forked from
one zygote per framework, the default on the CPU) and with a fresh interpreter per cell
(HLBENCH_PREIMPORT=0), side by side in one run.

Each trial runs the suite twice through `hlbench run`, once each way, alternating which goes
first. Printed per trial: both suite wall times and the ratio forked / spawned; then the medians,
the ratio of medians and its spread, the median worker wall time per backend each way, and the
ratio of median tokens/s per cell (forked / spawned: ~1.0 means forking changed the start, not the
training). A benchmark, not a test: exits 0 whatever the figures (2 on bad arguments).

    python benchmarks/startup.py                              # suites/smoke.yaml, 3 trials
    python benchmarks/startup.py suites/default.yaml --trials 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

MODES = {"forked": "", "spawned": "0"}  # HLBENCH_PREIMPORT for each way


def run_once(suite: Path, results: Path, preimport: str) -> tuple[float, list[dict]]:
    """The suite's wall time through the CLI and its records."""
    cmd = [sys.executable, "-m", "hlbench", "run", str(suite), "--quiet"]
    env = {**os.environ, "HLBENCH_PREIMPORT": preimport}
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--results-dir", str(results)], env=env, check=False, capture_output=True)
    wall_s = time.perf_counter() - t0
    files = sorted(results.rglob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    records = [json.loads(line) for line in files[-1].read_text().splitlines()] if files else []
    return wall_s, records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", nargs="?", default="suites/smoke.yaml", type=Path)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.suite.is_file() or args.trials < 1:
        print(f"startup.py: no suite file {args.suite} (or --trials < 1)", file=sys.stderr)
        return 2
    walls: dict[str, list[float]] = defaultdict(list)
    worker_s: dict[tuple[str, str], list[float]] = defaultdict(list)
    tokens: dict[tuple[str, str], list[float]] = defaultdict(list)
    print(f"{args.suite}: {args.trials} trials, forked (pre-imported) vs spawned (fresh process)")
    print(f"{'trial':>5}  {'forked s':>9}  {'spawned s':>9}  {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(args.trials):
            order = list(MODES) if trial % 2 == 0 else list(reversed(MODES))
            for mode in order:
                wall_s, records = run_once(args.suite, Path(tmp, mode), MODES[mode])
                walls[mode].append(wall_s)
                for r in records:
                    if r.get("status") != "ok":
                        continue
                    worker_s[(mode, r["cell"]["backend"])].append(r["worker_wall_s"])
                    tokens[(mode, r["cell_id"])].append(r["metrics"]["tokens_per_s"])
            f, s = walls["forked"][-1], walls["spawned"][-1]
            print(f"{trial + 1:>5}  {f:9.1f}  {s:9.1f}  {f / s:6.3f}")
    report(walls, worker_s, tokens)
    return 0


def report(walls: dict, worker_s: dict, tokens: dict) -> None:
    med = {mode: statistics.median(v) for mode, v in walls.items()}
    ratios = [f / s for f, s in zip(walls["forked"], walls["spawned"])]
    print(f"\nsuite wall time, median: forked {med['forked']:.1f} s, spawned {med['spawned']:.1f}")
    print(
        f"ratio of medians forked / spawned = {med['forked'] / med['spawned']:.3f} "
        f"(per-trial ratios span {min(ratios):.3f} … {max(ratios):.3f})"
    )
    for backend in sorted({b for _, b in worker_s}):
        f = statistics.median(worker_s.get(("forked", backend), [float("nan")]))
        s = statistics.median(worker_s.get(("spawned", backend), [float("nan")]))
        print(f"worker wall time per cell, {backend}: forked {f:.2f} s, spawned {s:.2f} s (median)")
    cell_ratios = [
        statistics.median(tokens[("forked", c)]) / statistics.median(tokens[("spawned", c)])
        for m, c in tokens
        if m == "forked" and ("spawned", c) in tokens
    ]
    if cell_ratios:
        print(
            f"tokens/s forked / spawned per cell: median {statistics.median(cell_ratios):.3f}, "
            f"span {min(cell_ratios):.3f} … {max(cell_ratios):.3f} over {len(cell_ratios)} cells"
        )


if __name__ == "__main__":
    sys.exit(main())
