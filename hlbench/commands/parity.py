"""`hlbench parity`: the same cells on every backend, compared (hlbench.parity does the work)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError

EPILOG = """\
A cell group is the suite's cells that differ only in backend. Only groups at a precision with
tolerances (fp32, bf16, fp16, bf16-pure; hlbench.parity.TOLERANCES) and without pruning are checked;
use --all-axes to include every accumulation and compile value (default: the smallest accumulation,
compile false).

Each backend runs in a fresh process. Records (kind: parity) go to
results/<suite>/parity-<run-id>.jsonl, where `hlbench report` finds them.

exit status: 0 every check within tolerance; 1 a check failed (the table and the message name it);
2 bad suite or arguments, or fewer than two installed backends.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "parity",
        help="check that the backends train identically (same weights, batches, optimizer)",
        description="Run each cell group on every backend from the same NumPy weights and batches "
        "and compare "
        "the initial loss, first-step gradients and the loss after N AdamW steps.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "suite",
        type=Path,
        nargs="?",
        help="a shipped suite by name (e.g. smoke) or a YAML file; or give a workload with --model",
    )
    p.add_argument(
        "--model", choices=["gpt", "lstm", "llama"], help="check this workload instead of a suite's"
    )
    p.add_argument("--size", default="tiny", help="preset with --model (default: tiny)")
    p.add_argument("--seq-len", type=int, default=32, help="with --model (default: 32)")
    p.add_argument("--batch-size", type=int, default=8, help="with --model (default: 8)")
    p.add_argument("--accumulation", type=int, default=1, help="with --model (default: 1)")
    p.add_argument(
        "--precision",
        default="fp32",
        help="with --model, comma-separated levels, e.g. fp32,bf16,fp16,bf16-pure (default: fp32)",
    )
    p.add_argument(
        "--backends", default="torch,tf", help="with --model, comma-separated (default: torch,tf)"
    )
    p.add_argument(
        "--device", default="cpu", help="with --model: cpu | cuda[:N] | auto (default: cpu)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="AdamW steps before the final loss check (default: 20)",
    )
    p.add_argument(
        "--all-axes", action="store_true", help="every accumulation and compile value of the suite"
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="where the parity records go (default: results)",
    )
    p.set_defaults(func=cmd_parity)


def _suite_from_args(args: argparse.Namespace) -> Any:
    from hlbench.suite import suite_from_mapping

    raw = {
        "name": f"parity-{args.model}-{args.size}",
        "device": args.device,
        "backends": [b.strip() for b in args.backends.split(",") if b.strip()],
        "workloads": [
            {
                "model": args.model,
                "size": args.size,
                "seq_len": args.seq_len,
                "batch_size": args.batch_size,
            }
        ],
        "axes": {
            "accumulation": [args.accumulation],
            "precision": [v.strip() for v in args.precision.split(",") if v.strip()],
        },
    }
    where = Path(f"<--model {args.model}>")
    return suite_from_mapping(raw, where, hashlib.sha256(repr(raw).encode()).hexdigest())


def _selected(suite: Any, all_axes: bool) -> list[Any]:
    from hlbench import parity
    from hlbench.workloads.custom import MODELS as CUSTOM_MODELS

    cells = [
        c
        for c in suite.cells
        if c.axes["precision"] in parity.TOLERANCES
        and c.axes.get("pruning", "none") == "none"
        # a custom model starts from each framework's own initialisation: nothing to compare
        and c.workload.spec.model not in CUSTOM_MODELS
    ]
    if not all_axes and cells:
        k = min(c.axes["accumulation"] for c in cells)
        cells = [
            c for c in cells if c.axes["accumulation"] == k and not c.axes.get("compile", False)
        ]
    return cells


def cmd_parity(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from hlbench.sweep.runner import new_run_id

    suite, steps, groups = _plan(args)
    run_id = new_run_id()
    out = args.results_dir / suite.name / f"parity-{run_id}.jsonl"
    logs = out.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    rows: list[list[str]] = []
    for group in groups:
        group_rows, group_failures = _check_group(group, steps, run_id, suite.name, out, logs)
        rows += group_rows
        failed += group_failures
    print(tabulate(rows, headers=["cells", "check", "rel. diff", "tolerance", "", "detail"]))
    print(f"records: {out}")
    for line in failed:
        print(f"hlbench parity: diverged: {line}", file=sys.stderr)
    return 1 if failed else 0


def _plan(args: argparse.Namespace) -> tuple[Any, int, list[list[Any]]]:
    """The suite, the number of steps and the cell groups to check; UsageError says what to fix."""
    from hlbench import parity
    from hlbench.backends import get_spec
    from hlbench.suite import load_suite
    from hlbench.suite.shipped import resolve

    if (args.suite is None) == (args.model is None):
        raise UsageError("give either a suite file or --model (not both)")
    steps = parity.DEFAULT_STEPS if args.steps is None else args.steps
    if steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
    suite = load_suite(resolve(args.suite)) if args.suite else _suite_from_args(args)
    missing = [b for b in suite.config.backends if not get_spec(b).framework_installed()]
    if missing:
        raise UsageError(
            f"backends {', '.join(missing)}: framework not installed here; "
            + "; ".join(get_spec(b).install_hint for b in missing)
        )
    groups = parity.groups(_selected(suite, args.all_axes))
    if not groups:
        raise UsageError(
            f"{suite.path}: no cell runs on two or more backends at a precision with parity "
            f"tolerances ({', '.join(parity.TOLERANCES)}); list at least two backends"
        )
    return suite, steps, groups


def _check_group(
    group: list[Any], steps: int, run_id: str, suite_name: str, out: Path, logs: Path
) -> tuple[list[list[str]], list[str]]:
    """Probe one cell group on each of its backends, append its parity record: (table rows,
    failures)."""
    from hlbench import parity
    from hlbench.env import host_environment
    from hlbench.records import append_record

    label = "/".join(p for p in group[0].id.split("/") if p != group[0].backend)
    print(f"hlbench parity: {label} on {', '.join(c.backend for c in group)} ...", file=sys.stderr)
    try:
        probes = [parity.run_probe(c, steps, logs / f"{c.hash}.log") for c in group]
    except (RuntimeError, OSError) as exc:
        return [], [f"{label}: {exc}"]
    checks = parity.compare(probes, parity.TOLERANCES[group[0].axes["precision"]], steps)
    record = parity.parity_record(
        group, probes, checks, steps, run_id, suite_name, {"host": host_environment()}
    )
    append_record(out, record)
    rows = [
        [
            label,
            check["name"],
            f"{check['rel_diff']:.3g}",
            f"{check['tolerance']:.0e}",
            "ok" if check["passed"] else "FAIL",
            check["detail"],
        ]
        for check in checks
    ]
    failed = [
        f"{label}: {check['name']}: {check['detail']} (tolerance {check['tolerance']:.0e})"
        for check in checks
        if not check["passed"]
    ]
    return rows, failed
