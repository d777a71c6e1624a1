#!/usr/bin/env python
"""How often does `hlbench compare` cry wolf, and how often does it catch a real slowdown?

Two phases, so that the expensive one can be rerun alone:

    python benchmarks/power_study.py collect benchmarks/power/tiny.yaml    # ~12 min, 2 cores
    python benchmarks/power_study.py collect benchmarks/power/small.yaml   # ~20 min
    python benchmarks/power_study.py analyze -o benchmarks/results/power_study.md

`collect` runs the suite `--runs` times unchanged (A) and `--slow-runs` times with a per-step
slowdown (S) through `hlbench run`, one suite run after another as CI would, the S runs spread
among the A runs so that a drift of the machine lands on both. The slowdown is the test-only hook
HLBENCH_TEST_STEP_DELAY_S (a sleep inside every timed step), sized as `--slowdown` × the median
step time of the first A run. What ran is written to <results>/<suite>/manifest.json.

`analyze` judges every A/A pair and every (A baseline, S candidate) pair with compare's own rule
(hlbench.comparison),
on the first 5 repeats of each run and on all of them, without and with a noise
floor. A pair's floor is calibrated on the *other* A runs only, never on the two runs compared, as
a baseline's stored floor comes from A/A runs made before the candidate existed. It prints and
writes the share of A/A pairs called `regressed` or `improved` (false alarms), the share of S
pairs called `regressed` (power), every verdict count, what `compare --calibrate` says over all A
runs (spread, noise floor, smallest regression detected in 90% of pairs), and the wall time.

A benchmark, not a test: exits 0 whatever it finds (2 on bad arguments).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DELAY_ENV = "HLBENCH_TEST_STEP_DELAY_S"


def run_suite(suite: Path, results: Path, delay_s: float) -> tuple[Path, float]:
    """One `hlbench run`; (its records file, its wall time). On an idle 2-core machine the 1-minute
    load average stays near 1 (the worker itself); the manifest keeps it to show what else ran."""
    before = set(results.rglob("*.jsonl"))
    env = {**os.environ, DELAY_ENV: f"{delay_s:.6f}"} if delay_s else None
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "hlbench", "run", str(suite), "--quiet", "--results-dir"]
    subprocess.run([*cmd, str(results)], check=True, capture_output=True, text=True, env=env)
    wall_s = time.perf_counter() - started
    (new,) = set(results.rglob("*.jsonl")) - before
    return new, wall_s


def median_step_s(records: Path) -> float:
    steps = []
    for line in records.read_text().splitlines():
        record = json.loads(line)
        for window in record["timing"]["window_step_times_s"]:
            steps.extend(window)
    return statistics.median(steps)


def schedule(runs: int, slow_runs: int) -> list[str]:
    """A A S A S … A: two A runs first (the first sizes the delay), then S runs among the A runs."""
    order, a_left, s_left = ["A", "A"], runs - 2, slow_runs
    while a_left or s_left:
        if s_left:
            order.append("S")
            s_left -= 1
        if a_left:
            order.append("A")
            a_left -= 1
    return order


def collect(args: argparse.Namespace) -> int:
    results = args.results / args.suite.stem
    results.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"suite": str(args.suite), "slowdown": args.slowdown, "runs": []}
    delay_s = 0.0
    for i, role in enumerate(schedule(args.runs, args.slow_runs)):
        load_before = os.getloadavg()[0]
        records, wall_s = run_suite(args.suite, results, delay_s if role == "S" else 0.0)
        if i == 0:
            delay_s = args.slowdown * median_step_s(records)
            manifest["delay_s"] = delay_s
        manifest["runs"].append(
            {
                "role": role,
                "records": str(records.relative_to(results)),
                "wall_s": wall_s,
                "delay_s": delay_s * (role == "S"),
                "load_1min": [load_before, os.getloadavg()[0]],
            }
        )
        (results / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print(
            f"{i + 1:2d} {role} {wall_s:6.1f} s  load {os.getloadavg()[0]:.2f}  {records}",
            flush=True,
        )
    return 0


# --------------------------------------------------------------------------------------------------
# analyze


@dataclass(frozen=True)
class StudyRun:
    role: str  # "A" unchanged, "S" slowed
    records: list[dict[str, Any]]
    wall_s: float
    load_1min: list[float]  # the load average before and after the run


def load_study(folder: Path) -> tuple[dict[str, Any], list[StudyRun]]:
    from hlbench.comparison.inputs import load_run

    manifest = json.loads((folder / "manifest.json").read_text())
    runs = [
        StudyRun(
            r["role"], load_run(folder / r["records"]).records, r["wall_s"], r.get("load_1min", [])
        )
        for r in manifest["runs"]
    ]
    return manifest, runs


def first_repeats(records: list[dict[str, Any]], repeats: int | None) -> list[dict[str, Any]]:
    return [r for r in records if repeats is None or int(r.get("repeat") or 0) < repeats]


def verdicts(
    base: list[dict[str, Any]], cand: list[dict[str, Any]], others: list[list[dict[str, Any]]]
) -> tuple[list[str], list[str]]:
    """compare's verdicts per cell on tokens/s: without a floor, and with one from `others`."""
    from hlbench.comparison.noise import calibrate
    from hlbench.comparison.runs import compare_runs
    from hlbench.comparison.verdicts import DEFAULT_THRESHOLDS

    metrics = ["tokens_per_s"]
    plain = compare_runs(base, cand, metrics).verdicts()
    if len(others) < 2:  # too few A runs left to calibrate on
        return plain, plain
    cal = calibrate(others, metrics, DEFAULT_THRESHOLDS, resolvable=False)
    floors = {(f.cell_hash, f.metric): f.noise_floor for f in cal.floors}
    return plain, compare_runs(base, cand, metrics, DEFAULT_THRESHOLDS, floors).verdicts()


def judge_pairs(runs: list[StudyRun], repeats: int | None) -> dict[str, dict[str, Counter]]:
    """Verdict counts for A/A pairs and (A baseline, S candidate) pairs, without and with a floor;
    a pair's floor is calibrated on the A runs that are not in the pair."""
    a = [first_repeats(r.records, repeats) for r in runs if r.role == "A"]
    s = [first_repeats(r.records, repeats) for r in runs if r.role == "S"]
    out = {k: {"no floor": Counter(), "floor": Counter()} for k in ("A/A", "S/A")}
    for i, j in itertools.combinations(range(len(a)), 2):
        others = [x for k, x in enumerate(a) if k not in (i, j)]
        plain, floored = verdicts(a[i], a[j], others)
        out["A/A"]["no floor"].update(plain)
        out["A/A"]["floor"].update(floored)
    for i, base in enumerate(a):
        others = [x for k, x in enumerate(a) if k != i]
        for slow in s:
            plain, floored = verdicts(base, slow, others)
            out["S/A"]["no floor"].update(plain)
            out["S/A"]["floor"].update(floored)
    return out


def judge_pooled(
    runs: list[StudyRun], group: int, repeats: int | None, most: int = 120
) -> dict[str, dict[str, Counter]]:
    """As judge_pairs, each side made of `group` suite runs pooled (every repeat is its own worker
    process, so a side of g runs has g × repeats independent samples, spread over more time than
    one run's: what more repeats would buy, with the drift between runs included). At most `most`
    comparisons of each kind, drawn evenly from all the ways to pick the sides."""
    a = [first_repeats(r.records, repeats) for r in runs if r.role == "A"]
    s = [first_repeats(r.records, repeats) for r in runs if r.role == "S"]
    out = {k: {"no floor": Counter(), "floor": Counter()} for k in ("A/A", "S/A")}
    aa, sa = [], []
    for base in itertools.combinations(range(len(a)), group):
        rest = [i for i in range(len(a)) if i not in base]
        aa += [(base, cand) for cand in itertools.combinations(rest, group) if cand > base]
        sa += [(base, slow) for slow in itertools.combinations(range(len(s)), group)]

    def pool(indices: tuple[int, ...], source: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [record for i in indices for record in source[i]]

    for kind, pairs, cand_source in (("A/A", aa, a), ("S/A", sa, s)):
        for base, cand in pairs[:: max(1, len(pairs) // most)][:most]:
            used = set(base) | (set(cand) if kind == "A/A" else set())
            others = [x for i, x in enumerate(a) if i not in used]
            plain, floored = verdicts(pool(base, a), pool(cand, cand_source), others)
            out[kind]["no floor"].update(plain)
            out[kind]["floor"].update(floored)
    return out


def calibration_lines(runs: list[StudyRun], repeats: int) -> list[str]:
    """What `compare --calibrate` says over all A runs: per cell the spread, the floor and the
    smallest regression compare then detects in 90% of A/A pairs."""
    from hlbench.comparison.noise import calibrate
    from hlbench.comparison.verdicts import DEFAULT_THRESHOLDS

    a = [first_repeats(r.records, repeats) for r in runs if r.role == "A"]
    cal = calibrate(a, ["tokens_per_s"], DEFAULT_THRESHOLDS)
    lines = [
        f"`compare --calibrate` over the {len(a)} A runs, {repeats} repeats each:",
        "",
        "| cell | spread between runs | largest A/A change | noise floor | smallest detectable "
        "regression |",
        "|---|---|---|---|---|",
    ]
    for f in cal.floors:
        found = "over 100%" if f.resolvable_change is None else f"{f.resolvable_change:.1%}"
        lines.append(
            f"| {f.cell_id} | {f.spread:.1%} | {f.largest_change:.1%} | ±{f.noise_floor:.1%} | "
            f"{found} |"
        )
    return [*lines, ""]


def ok_records(run: StudyRun) -> list[dict[str, Any]]:
    return [r for r in run.records if r.get("status") == "ok"]


def disturbed(runs: list[StudyRun], factor: float = 1.5, slow: float = 3.0) -> list[int]:
    """Runs another process competed with for the cores: a wall time over `factor` × the median of
    their kind's, or a repeat of some cell `slow` times slower than that cell's median repeat (on
    2 cores only a competing process makes one worker several times slower; the manifest's load
    average says so too)."""
    out = set()
    for role in ("A", "S"):
        walls = [r.wall_s for r in runs if r.role == role]
        if walls:
            limit = factor * statistics.median(walls)
            out |= {i for i, r in enumerate(runs) if r.role == role and r.wall_s > limit}
    typical = {}
    for h in {rec["cell_hash"] for run in runs for rec in run.records}:
        typical[h] = statistics.median(
            rec["metrics"]["tokens_per_s"]
            for run in runs
            for rec in run.records
            if rec["cell_hash"] == h
        )
    for i, run in enumerate(runs):
        if any(
            rec["metrics"]["tokens_per_s"] * slow < typical[rec["cell_hash"]] for rec in run.records
        ):
            out.add(i)
    return sorted(out)


def summarize(folder: Path) -> list[str]:
    manifest, runs = load_study(folder)
    lines = summary_of(folder, manifest, runs)
    slow = disturbed(runs)
    if slow:
        shown = ", ".join(f"{i + 1} ({runs[i].role}, {runs[i].wall_s:.0f} s)" for i in slow)
        kept = [r for i, r in enumerate(runs) if i not in slow]
        lines += [
            f"#### {folder.name} without the runs another process slowed",
            "",
            f"Run(s) {shown} took over 1.5× the median wall time of their kind, or held a repeat "
            "over 3× slower than its cell's median: another process competed for the cores. The "
            "same analysis without them:",
            "",
            *summary_of(folder, manifest, kept)[2:],
        ]
    return lines


def summary_of(folder: Path, manifest: dict[str, Any], runs: list[StudyRun]) -> list[str]:
    repeats = max(int(r.get("repeat") or 0) for run in runs for r in run.records) + 1
    a_runs = [r for r in runs if r.role == "A"]
    tokens = [r["metrics"]["tokens_per_s"] for run in a_runs for r in ok_records(run)]
    lines = [
        f"### {folder.name}: `{manifest['suite']}`",
        "",
        f"{len(a_runs)} A runs, {len(runs) - len(a_runs)} S runs (per-step delay "
        f"{manifest['delay_s'] * 1e3:.2f} ms = {manifest['slowdown']:.0%} of the first run's "
        f"median step), {repeats} repeats each; {len({r['cell_hash'] for r in runs[0].records})} "
        f"cell(s); wall time per suite run {statistics.median(r.wall_s for r in runs):.0f} s "
        f"(median), {sum(r.wall_s for r in runs) / 60:.1f} min in all. Per-repeat tokens/s of the "
        f"A runs: median {statistics.median(tokens):,.0f}, range {min(tokens):,.0f}–"
        f"{max(tokens):,.0f}.",
        "",
        "| repeats judged | pairs | floor | regressed | improved | unchanged | inconclusive | "
        "false alarms (A/A) / power (S/A) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for judged in sorted({min(5, repeats), repeats}):
        lines += verdict_rows(judge_pairs(runs, judged), str(judged))
    n_a = sum(r.role == "A" for r in runs)
    for group in (2, 3):
        for judged in sorted({min(5, repeats), repeats}):
            if n_a >= 2 * group:  # enough A runs for two disjoint sides
                shown = f"{group * judged} ({group} runs × {judged} pooled)"
                lines += verdict_rows(judge_pooled(runs, group, judged), shown)
    loads = [max(r.load_1min) for r in runs if r.load_1min]
    if loads:
        lines += [
            "",
            f"1-minute load average during the runs: median {statistics.median(loads):.2f}, "
            f"max {max(loads):.2f} (an idle machine running one worker: about 1).",
        ]
    lines.append("")
    for judged in sorted({min(5, repeats), repeats}):
        lines += calibration_lines(runs, judged)
    return lines


def verdict_rows(table: dict[str, dict[str, Counter]], judged: str) -> list[str]:
    rows = []
    for kind, by_floor in table.items():
        for floor, counts in by_floor.items():
            n = sum(counts.values())
            if not n:  # a suite studied without S runs
                continue
            bad = counts["regressed"] + (counts["improved"] if kind == "A/A" else 0)
            rows.append(
                f"| {judged} | {kind} ×{n} | {floor} | {counts['regressed']} | "
                f"{counts['improved']} | {counts['unchanged']} | {counts['inconclusive']} | "
                f"{bad / n:.0%} |"
            )
    return rows


def analyze(args: argparse.Namespace) -> int:
    folders = sorted(p.parent for p in args.results.glob("*/manifest.json"))
    if not folders:
        print(f"power_study.py: no */manifest.json under {args.results}", file=sys.stderr)
        return 2
    lines = ["## hlbench compare: false alarms and power on this machine", ""]
    for folder in folders:
        lines += summarize(folder)
        print("\n".join(lines[-20:]), flush=True)
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    c = sub.add_parser("collect", help="run the suite: A runs and slowed S runs")
    c.add_argument("suite", type=Path)
    c.add_argument("--results", type=Path, default=Path("results/power-study"))
    c.add_argument("--runs", type=int, default=8, help="unchanged (A) runs (default 8)")
    c.add_argument("--slow-runs", type=int, default=4, help="slowed (S) runs (default 4)")
    c.add_argument("--slowdown", type=float, default=0.15, help="per-step slowdown (default 0.15)")
    a = sub.add_parser("analyze", help="judge the A/A and S/A pairs")
    a.add_argument("results", type=Path, nargs="?", default=Path("results/power-study"))
    a.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    if args.phase == "collect":
        return collect(args)
    return analyze(args)


if __name__ == "__main__":
    sys.exit(main())
