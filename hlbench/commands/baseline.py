"""`hlbench baseline save|show|list|name`: keep the last accepted run per suite and machine type."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """\
baselines live in --dir, else $HLBENCH_BASELINES_DIR, else results/baselines; each is a directory
<name>/ with records.jsonl and baseline.json (earlier versions under <name>/history/). The default
name is <suite>--<machine type>, e.g. ci-gpu--nvidia-h200, so each kind of runner has its own.

  hlbench baseline save results/ci-gpu/<run-id>.jsonl --note "accepted after #123"
  hlbench compare --calibrate results/ci-gpu/ -o noise.json     # A/A runs of unchanged code
  hlbench baseline save results/ci-gpu/<run-id>.jsonl --noise noise.json
  hlbench compare "$(hlbench baseline name CAND.jsonl --path)" CAND.jsonl
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="save and show named baselines (the last accepted run of a machine type) for compare",
        description="Keep named baseline runs for `hlbench compare`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", required=True, parser_class=type(p))

    save = actions.add_parser(
        "save",
        help="store a run as a baseline (promote it)",
        description="Store a run as a named baseline; the previous one moves to history/.",
    )
    save.add_argument("records", type=Path, help="records file or run directory to promote")
    save.add_argument("--name", help="baseline name (default: <suite>--<machine type> of the run)")
    save.add_argument("--note", help="why this run was accepted (kept in baseline.json)")
    save.add_argument(
        "--run-id",
        action="append",
        default=[],
        metavar="ID",
        help="the run to promote when RECORDS holds several (repeatable; 'all' pools them; "
        "default: the latest)",
    )
    save.add_argument(
        "--noise",
        type=Path,
        metavar="FILE",
        help="store this runner's A/A noise floors with the baseline (the JSON written by "
        "`hlbench compare --calibrate RUN RUN ... -o FILE`); compare then applies them",
    )
    _dir(save)
    save.set_defaults(func=cmd_save)
    _register_queries(actions)


def _register_queries(actions: argparse._SubParsersAction) -> None:
    """show, list and name: reading the stored baselines."""
    show = actions.add_parser(
        "show",
        help="print a baseline's environment and cells",
        description="Print a stored baseline: where it came from, its environment and, per cell, "
        "its runs, median tokens/s and noise floor.",
    )
    show.add_argument("name", help="the baseline's name (hlbench baseline list shows them)")
    show.add_argument(
        "--format", choices=("text", "json"), default="text", help="text or json (default: text)"
    )
    _dir(show)
    show.set_defaults(func=cmd_show)

    list_ = actions.add_parser(
        "list", help="list the stored baselines", description="List the stored baselines' names."
    )
    _dir(list_)
    list_.set_defaults(func=cmd_list)

    name = actions.add_parser(
        "name",
        help="print the default baseline name for a run (its suite and machine type)",
        description="Print the name `baseline save` would give a run: <suite>--<machine type>.",
    )
    name.add_argument("records", type=Path, help="records file or run directory")
    name.add_argument(
        "--path", action="store_true", help="print the baseline's directory instead of its name"
    )
    _dir(name)
    name.set_defaults(func=cmd_name)


def _dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="baselines directory (default: $HLBENCH_BASELINES_DIR or results/baselines)",
    )


def cmd_save(args: argparse.Namespace) -> int:
    from hlbench.comparison import baseline

    directory = baseline.baselines_dir(args.dir)
    path, meta = baseline.save(
        args.records, args.name, directory, args.note, tuple(args.run_id), args.noise
    )
    if meta["picked"]:
        print(f"note: {meta['picked']}", file=sys.stderr)
    print(f"baseline {meta['name']!r} ← {meta['source']} ({meta['cells_ok']} cell(s) ok) in {path}")
    if meta["noise_runs"]:
        print(f"noise floors from {len(meta['noise_runs'])} A/A run(s) stored with it")
    if meta["cells_not_ok"]:
        print(
            f"note: {len(meta['cells_not_ok'])} cell(s) without an ok record are not comparable "
            f"against this baseline: {', '.join(meta['cells_not_ok'][:5])}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from hlbench.comparison import baseline

    info = baseline.describe(args.name, baseline.baselines_dir(args.dir))
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    print(f"baseline {info.get('name', args.name)}  ({info['path']})")
    for key in ("saved_at", "source", "run_ids", "suite", "machine_type", "note"):
        if info.get(key):
            print(f"  {key}: {info[key]}")
    env = info.get("environment") or {}
    for key, values in env.items():
        print(f"  env.{key}: {', '.join(values) if values else 'unknown'}")
    rows = [
        [
            c["cell_id"],
            c["cell_hash"],
            c["status"],
            c["repeats_ok"],
            "—" if c["tokens_per_s_median"] is None else f"{c['tokens_per_s_median']:,.0f}",
            _floor(c["tokens_per_s_noise_floor"]),
        ]
        for c in info["cells"]
    ]
    print(
        tabulate(
            rows,
            headers=["cell", "hash", "status", "runs ok", "tokens/s (median)", "noise floor"],
            disable_numparse=True,
        )
    )
    return 0


def _floor(value: float | None) -> str:
    return "— (not calibrated)" if value is None else f"±{value:.1%}"


def cmd_list(args: argparse.Namespace) -> int:
    from hlbench.comparison import baseline

    directory = baseline.baselines_dir(args.dir)
    names = baseline.list_names(directory)
    for name in names:
        print(name)
    if not names:
        print(f"no baselines in {directory}")
    return 0


def cmd_name(args: argparse.Namespace) -> int:
    from hlbench.comparison import baseline
    from hlbench.comparison.comparability import load_run

    name = baseline.default_name(load_run(args.records))
    print(baseline.baselines_dir(args.dir) / name if args.path else name)
    return 0
