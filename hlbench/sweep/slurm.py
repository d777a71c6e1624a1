"""A sharded run submitted to Slurm from Python, through submitit: one job array of N tasks, each
running one shard (`hlbench run SUITE --shard I/N --run-id ID`) as its own process.

Each task runs `python -m hlbench` with the job's interpreter rather than hlbench's run in the
job's process: a shard is exactly what a hand-written array script runs (signals, exit status,
records file), and submitit only carries the arguments there and the exit status back. submitit is
the `slurm` extra, imported only here, when a submission is made.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError

CLUSTERS = ("slurm", "local")  # submitit's executors: a Slurm cluster, or processes of this machine


@dataclass(frozen=True)
class Request:
    """What to submit: hlbench's arguments for each shard, where submitit keeps its job files
    (pickles, logs; on Slurm a filesystem the nodes share), its executor, and its parameters
    (submitit's names: timeout_min, gpus_per_node, slurm_partition, ...)."""

    argvs: list[list[str]]
    folder: Path
    cluster: str = "slurm"
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ended:
    """How one submitted shard ended: its `hlbench run` exit status, or why there is none."""

    job_id: str
    exit_code: int | None
    problem: str = ""


def run_shard(argv: Sequence[str]) -> int:
    """What each array task runs: `python -m hlbench ARGV`; returns its exit status."""
    return subprocess.run([sys.executable, "-m", "hlbench", *argv], check=False).returncode


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--slurm needs submitit, which is not installed here: pip install 'hlbench[slurm]' "
            "(or write the array script yourself: examples/cluster/slurm-array.sh)"
        ) from None
    return submitit


def submit(request: Request) -> list[Any]:
    """Submit the shards as one job array; submitit's jobs, in shard order. A UsageError (one
    line) when submitit, Slurm or a parameter is missing or refused."""
    submitit = _submitit()
    if request.cluster not in CLUSTERS:
        raise UsageError(f"--slurm-cluster {request.cluster!r}: choose from {', '.join(CLUSTERS)}")
    if request.cluster == "slurm" and shutil.which("sbatch") is None:
        raise UsageError(
            "--slurm: no Slurm here (sbatch is not on PATH); submit from a login node, or try "
            "the launch on this machine with --slurm-cluster local"
        )
    executor = submitit.AutoExecutor(folder=request.folder, cluster=request.cluster)
    try:
        executor.update_parameters(**request.parameters)
    except (ValueError, TypeError) as exc:  # submitit names the parameters it does not know
        raise UsageError(f"--slurm: {_first_line(exc)}") from None
    try:
        return list(executor.map_array(run_shard, request.argvs))
    except Exception as exc:  # sbatch's refusal (partition, account, limits) comes back as one
        raise UsageError(f"--slurm: the submission failed: {_first_line(exc)}") from None


def wait(jobs: Sequence[Any]) -> list[Ended]:
    """Wait for every job; each one's exit status, or (a job that died, was cancelled or ran out of
    time) submitit's reason."""
    ended = []
    for job in jobs:
        try:
            ended.append(Ended(str(job.job_id), int(job.result())))
        except Exception as exc:  # submitit's FailedJobError / UncompletedJobError
            log = getattr(getattr(job, "paths", None), "stderr", None)
            where = f" (log: {log})" if log else ""
            ended.append(Ended(str(job.job_id), None, _first_line(exc) + where))
    return ended


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
