"""`hlbench run SUITE --slurm N`: submit the suite as N shards, one Slurm job array, through
submitit (hlbench.sweep.slurm), for users who submit from Python rather than with sbatch. Every
task runs `hlbench run SUITE --shard I/N --run-id ID` with the flags that shape the cells and their
measurement passed on; the records land in <results>/<suite>/<run-id>/, one file per shard."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.sweep import shard as sharding

DEFAULT_TIME_MIN = 60


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--slurm",
        type=int,
        metavar="N",
        help="submit the suite as N shards in one Slurm job array, through submitit "
        "(pip install 'hlbench[slurm]'); each task runs --shard I/N of one --run-id",
    )
    group.add_argument("--slurm-partition", metavar="NAME", help="the partition to submit to")
    group.add_argument(
        "--slurm-gpus",
        type=int,
        metavar="G",
        help="GPUs per shard (default: the launcher's nproc_per_node; 0 for a suite on the "
        "cpu; else 1)",
    )
    group.add_argument("--slurm-cpus", type=int, metavar="C", help="CPUs per shard")
    group.add_argument("--slurm-mem-gb", type=float, metavar="GB", help="memory per shard")
    group.add_argument(
        "--slurm-time-min",
        type=int,
        default=DEFAULT_TIME_MIN,
        metavar="MIN",
        help=f"time limit per shard (default: {DEFAULT_TIME_MIN}); shards it stopped continue "
        "their files when submitted again with the same --run-id",
    )
    group.add_argument(
        "--slurm-parallelism", type=int, metavar="K", help="at most K shards at once"
    )
    group.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another submitit Slurm parameter (slurm_KEY), e.g. account=proj, qos=high, "
        "constraint=h100",
    )
    group.add_argument(
        "--slurm-cluster",
        default="slurm",
        choices=("slurm", "local"),
        help="slurm (default), or local: the shards as processes of this machine (to try it)",
    )
    group.add_argument(
        "--slurm-wait",
        action="store_true",
        help="wait for the shards and say how each ended (and write --report of the whole run)",
    )


def submit(args: argparse.Namespace, suite: Any) -> int:
    """Submit the shards (or, with --dry-run, list them); with --slurm-wait, wait for them."""
    from hlbench.sweep import slurm
    from hlbench.sweep.runner import new_run_id

    shards = _shards(args, suite)
    run_id = sharding.check_run_id(args.run_id) if args.run_id else new_run_id()
    run_dir = (args.results_dir / suite.name / run_id).resolve()
    if args.dry_run:
        for shard, n_mine in shards:
            print(sharding.summary(shard, n_mine, len(suite.cells), run_id))
        return 0
    count = len(shards)
    request = slurm.Request(
        [_shard_argv(args, shard, run_id) for shard, _ in shards],
        run_dir / "submitit",
        args.slurm_cluster,
        _parameters(args, suite, count),
    )
    jobs = slurm.submit(request)
    print(
        f"submitted {count} shard(s) of suite {suite.name!r} as run {run_id} "
        f"({args.slurm_cluster} job(s) {', '.join(str(job.job_id) for job in jobs)})"
    )
    print(f"records: {run_dir}/shard-I-of-{count}.jsonl; job logs: {request.folder}/")
    if not args.slurm_wait:
        report = f"hlbench report {run_dir}/ -o reports/{suite.name}.md"
        print(f"next, once the jobs have finished: {report}")
        return 0
    return _waited(args, slurm.wait(jobs), run_dir, suite.name)


def _shards(args: argparse.Namespace, suite: Any) -> list[tuple[sharding.Shard, int]]:
    """Each shard and the number of cells it owns; the checks --slurm needs first."""
    if args.resume:
        raise UsageError(
            "--slurm with --resume: resume a shard where it ran (hlbench run SUITE --resume "
            "ITS_FILE), or submit again with the same --run-id: every shard continues its file"
        )
    if args.report and not args.slurm_wait:
        raise UsageError("--report with --slurm needs --slurm-wait (the report is of the end)")
    if args.slurm < 1:
        raise UsageError(f"--slurm {args.slurm}: give the number of shards, at least 1")
    return [
        (shard, len(sharding.partition(suite.cells, shard)))
        for shard in (sharding.Shard(i, args.slurm, "--slurm") for i in range(args.slurm))
    ]


def _shard_argv(args: argparse.Namespace, shard: sharding.Shard, run_id: str) -> list[str]:
    """`hlbench run` arguments of one shard: absolute paths (a job starts in a directory of its
    own choosing) and the flags that shape the run."""
    argv = ["run", str(args.suite.resolve()), "--shard", f"{shard.index}/{shard.count}"]
    argv += ["--run-id", run_id, "--results-dir", str(args.results_dir.resolve()), "--quiet"]
    for glob in args.only or []:
        argv += ["--only", glob]
    argv += ["--no-telemetry"] if args.no_telemetry else []
    argv += ["--profile"] if args.profile else []
    argv += ["--devices", args.devices] if args.devices else []
    return argv


def _parameters(args: argparse.Namespace, suite: Any, count: int) -> dict[str, Any]:
    """submitit's parameters: one node and one task per shard, the GPUs its cells use."""
    launcher = suite.config.launcher
    gpus = args.slurm_gpus
    if gpus is None:
        gpus = launcher.nproc_per_node if launcher else int(suite.config.device != "cpu")
    parameters: dict[str, Any] = {
        "name": f"hlbench-{suite.name}",
        "timeout_min": args.slurm_time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": gpus,
        "slurm_array_parallelism": args.slurm_parallelism or count,
    }
    optional = {
        "cpus_per_task": args.slurm_cpus,
        "mem_gb": args.slurm_mem_gb,
        "slurm_partition": args.slurm_partition,
    }
    parameters.update({k: v for k, v in optional.items() if v is not None})
    for option in args.slurm_option:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-option {option!r}: expected KEY=VALUE, e.g. account=proj")
        parameters[f"slurm_{key.strip()}"] = int(value) if value.isdigit() else value
    return parameters


def _waited(args: argparse.Namespace, ended: list[Any], run_dir: Path, suite_name: str) -> int:
    """How each shard ended, the report when asked; exit 0 when every shard exited 0, else 1."""
    for index, end in enumerate(ended):
        how = f"exit status {end.exit_code}" if end.exit_code is not None else end.problem
        print(f"shard {index}/{len(ended)} (job {end.job_id}): {how}")
    if args.report:
        from hlbench.reporting import write_report

        out = args.report
        if out == Path("auto"):  # as a run in one piece names it
            out = Path("reports") / f"{suite_name}-{run_dir.name}.md"
        print(f"report: {write_report([run_dir], out)}")
    else:
        print(f"next: hlbench report {run_dir}/ -o reports/{suite_name}.md")
    return 0 if all(end.exit_code == 0 for end in ended) else 1
