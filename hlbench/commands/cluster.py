"""`hlbench run`'s cluster options: `--shard` (one shard of a sharded run, as a job array's task
runs it), `--run-id`, and `--slurm N` (submit the N shards through submitit). The split and the
file layout are hlbench.sweep.shard's; the submission is hlbench.sweep.slurm's."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hlbench.commands import slurm
from hlbench.errors import UsageError
from hlbench.sweep import shard as sharding


@dataclass(frozen=True)
class Sharded:
    """This process's shard and its share of the suite."""

    shard: sharding.Shard
    n_mine: int  # cells this shard owns
    n_total: int  # cells of the (--only) suite


def add_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "clusters", "split a suite over a job array's tasks (see the README, Beyond one GPU)"
    )
    group.add_argument(
        "--shard",
        metavar="I/N",
        help="run shard I of N (0-based: 0/4 … 3/4): the cells whose hash falls to it, records "
        "in <results>/<suite>/<run-id>/shard-I-of-N.jsonl; auto: from a Slurm job array "
        "(SLURM_ARRAY_TASK_ID, _COUNT, _MIN); auto/N: from a Kubernetes Indexed Job "
        "(JOB_COMPLETION_INDEX) of N completions",
    )
    group.add_argument(
        "--run-id",
        metavar="ID",
        help="the run's id (default: a new one; for --shard the launch's: SLURM_ARRAY_JOB_ID "
        "or HLBENCH_LAUNCH_ID, with the suite's hash); an existing records file of it is "
        "continued",
    )
    slurm.add_arguments(group)


def select_shard(
    args: argparse.Namespace, suite: Any, environ: Mapping[str, str]
) -> Sharded | None:
    """--shard (or the shard a --resume file names): checked against the other flags and the
    suite, and the suite's cells narrowed to the shard's; None for a run in one piece."""
    given = sharding.parse_shard(args.shard, environ) if args.shard else None
    shard = sharding.resumed_shard(args.resume, given) if args.resume else given
    if shard is None:
        return None
    if args.slurm is not None:
        raise UsageError("--shard and --slurm: --slurm submits every shard itself; give one")
    if args.report:
        raise UsageError(
            "--report with --shard: a shard holds only its part of the run; report the run's "
            "directory when every shard has finished (hlbench report RESULTS/SUITE/RUN_ID/)"
        )
    launcher = suite.config.launcher
    if launcher is not None and launcher.nnodes > 1:
        raise UsageError(
            "--shard: this suite's launcher spans several nodes; shard suites whose cells run "
            "on one machine each"
        )
    n_total = len(suite.cells)
    suite.cells = sharding.partition(suite.cells, shard)
    return Sharded(shard, len(suite.cells), n_total)


def describe(sharded: Sharded, run_id: str | None) -> str:
    return sharding.summary(sharded.shard, sharded.n_mine, sharded.n_total, run_id)


def dry_run_id(args: argparse.Namespace, suite: Any) -> str | None:
    """The run id a shard would write under, when it is known before running."""
    if args.resume:
        return resumed_run_id(args.resume)
    if args.run_id:
        return sharding.check_run_id(args.run_id)
    return sharding.launch_run_id(suite.sha256, os.environ)


def resumed_run_id(records_path: Path) -> str:
    """The run a --resume file continues: a shard file's directory, else the file's stem."""
    if sharding.shard_of_file(records_path) is not None:
        return records_path.resolve().parent.name
    return records_path.stem


def new_records_file(
    args: argparse.Namespace, suite: Any, sharded: Sharded | None
) -> tuple[Path, str, set[tuple[str, int]]]:
    """The records file of a run that is not --resume'd, its run id, and the (cell hash, repeat)
    pairs already ok in it: a file of this run id that exists is continued (a requeued array task,
    a replaced pod, the same command again), as --resume continues it."""
    from hlbench.sweep.plan import completed
    from hlbench.sweep.runner import new_run_id

    if args.resume and args.run_id:
        raise UsageError("--run-id with --resume: the resumed file's run goes on; give one")
    if sharded is not None:
        run_id = sharding.shard_run_id(args.run_id, suite.sha256, os.environ)
    else:
        run_id = sharding.check_run_id(args.run_id) if args.run_id else new_run_id()
    shard = sharded.shard if sharded else None
    path = sharding.records_path(args.results_dir, suite.name, run_id, shard)
    if not path.is_file():
        return path, run_id, set()
    done = completed(path, suite)
    print(
        f"hlbench: {path} exists: continuing it (cells with an ok record there do not run again)",
        file=sys.stderr,
    )
    return path, run_id, done


def next_step(sharded: Sharded, records_path: Path, suite_name: str) -> str:
    """What a shard says when it ends: how to report the whole run."""
    return (
        f"next, once all {sharded.shard.count} shards have finished: "
        f"hlbench report {records_path.parent}/ -o reports/{suite_name}.md"
    )
