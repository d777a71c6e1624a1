#!/usr/bin/env python
r"""Data parallel against one process: scaling and agreement of the same cells, side by side in one
run.

Takes a suite with a `launcher:` and runs, through `hlbench run` (fresh workers, exactly as a suite
runs): the suite without its launcher (one process per cell), then with it once per strategy asked
for (--torch ddp,fsdp; --tf mirrored,multi_worker). Prints per cell: tokens/s on one process and
data parallel, speedup, scaling efficiency (speedup / world size), and the largest per-step
training-loss difference from the one-process cell (same global batch, so it should be fp32
rounding). All records land in one results directory, ready for `hlbench report`.

On a CPU the ranks share the same cores as the one process (torchrun gives each rank one thread), so
the efficiency shows what the collectives and the extra processes cost there, not what GPUs would
gain.

A benchmark, not a test: exits 0 whatever the numbers (1 if a loss differs by more than 1e-4, since
then the runs did not do the same work; 2 on bad arguments).

    python benchmarks/data_parallel.py suites/ddp-cpu.yaml \
        --torch ddp,fsdp --tf mirrored,multi_worker
    hlbench report results-dp/ -o reports/ddp-cpu.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

LOSS_LIMIT = 1e-4  # beyond fp32 rounding: the two runs did not train the same model


def run(suite: dict, name: str, results: Path, tmp: Path) -> None:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**suite, "name": name}, sort_keys=False))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hlbench",
            "run",
            str(path),
            "--quiet",
            "--results-dir",
            str(results),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0, 1):  # 1: some cell failed, which the table shows
        sys.exit(
            f"data_parallel.py: hlbench run {name} exited {proc.returncode}: "
            f"{proc.stderr.strip()[-500:]}"
        )
    print(f"ran {name}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "suite", type=Path, help="a suite with a launcher: (e.g. suites/ddp-cpu.yaml)"
    )
    parser.add_argument(
        "--torch", default="ddp", help="torch strategies to run, comma-separated (ddp, fsdp)"
    )
    parser.add_argument(
        "--tf", default="mirrored", help="tf strategies, comma-separated (mirrored, multi_worker)"
    )
    parser.add_argument("--results-dir", type=Path, default=Path("results-dp"))
    args = parser.parse_args(argv)

    from hlbench.results import load
    from hlbench.suite.yamlio import load_yaml

    suite = load_yaml(args.suite)
    launcher = suite.pop("launcher", None)
    if not launcher:
        parser.error(f"{args.suite} has no launcher: to compare against")
    torch_strategies, tf_strategies = args.torch.split(","), args.tf.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        run(suite, f"{suite.get('name', args.suite.stem)}-single", args.results_dir, Path(tmp))
        for i in range(max(len(torch_strategies), len(tf_strategies))):
            strategies = {
                "torch": torch_strategies[min(i, len(torch_strategies) - 1)],
                "tf": tf_strategies[min(i, len(tf_strategies) - 1)],
            }
            label = "-".join(strategies.values())
            run(
                {
                    **suite,
                    "launcher": {
                        **launcher,
                        **strategies,
                        "port": int(launcher.get("port", 29500)) + 10 * i,
                    },
                },
                f"{suite.get('name', args.suite.stem)}-{label}",
                args.results_dir,
                Path(tmp),
            )

    df = load([args.results_dir])
    single = df[df["parallel"] == "single"].set_index(
        ["workload", "backend", "precision", "accumulation"]
    )
    rows, worst = [], 0.0
    for _, row in df[df["parallel"] != "single"].iterrows():
        key = (row["workload"], row["backend"], row["precision"], row["accumulation"])
        if key not in single.index or not row["ok"]:
            rows.append([row["cell_id"], row["status"], "", "", "", "", ""])
            continue
        base = single.loc[key]
        world = int("".join(ch for ch in row["parallel"] if ch.isdigit()))
        speedup = row["tokens_per_s"] / base["tokens_per_s"]
        diff = float(abs(row["train_loss_per_step_nats"] - base["train_loss_per_step_nats"]).max())
        worst = max(worst, diff)
        rows.append(
            [
                row["cell_id"],
                row["status"],
                f"{base['tokens_per_s']:,.0f}",
                f"{row['tokens_per_s']:,.0f}",
                f"{speedup:.2f}×",
                f"{speedup / world:.0%}",
                f"{diff:.1e}",
            ]
        )
    from tabulate import tabulate

    print(
        tabulate(
            rows,
            headers=[
                "cell",
                "status",
                "tokens/s one process",
                "tokens/s data parallel",
                "speedup",
                "efficiency",
                "max |Δ loss| per step",
            ],
        )
    )
    print(f"records: {args.results_dir}/")
    if worst > LOSS_LIMIT:
        print(
            f"data_parallel.py: a loss differs by {worst:.1e} > {LOSS_LIMIT:g}: not the same "
            f"training",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
