"""Starting a cell's worker processes and waiting for them as one group.

A single-device cell is one `python -m hlbench.worker` process. A data-parallel cell (`cell.launch`,
from the suite's `launcher:`) is started with the engine its framework provides, never a home-made
one:
- PyTorch DDP / FSDP: `python -m torch.distributed.run` (torchrun), which starts nproc_per_node ranks
  on this node, sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR, and tears the group down when one
  rank fails (its own --max-restarts 0 and monitor);
- TensorFlow MirroredStrategy: one process that drives all its devices itself;
- TensorFlow MultiWorkerMirroredStrategy: nproc_per_node processes on this node, each with the
  TF_CONFIG that tf.distribute reads (the whole cluster's addresses and the process's task index).

Whatever the engine, the parent treats the processes as one group: one timeout for all of them, and
when the group ends (done, failed, timed out or interrupted) every process that belonged to it is
killed, including ranks started in their own sessions (torchrun starts each rank with
start_new_session), so none is left hanging. Each process writes its own `result.rank<R>.json`; rank
0 (the chief) also writes `result.json` with the figures of all ranks combined (hlbench.train).
"""

from __future__ import annotations

import json
import os
import signal
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

POLL_S = 0.2  # how often the parent looks at the group (it sleeps in between, never spins)
RANK_ENV = "HLBENCH_RANK"  # a process's rank when no launcher sets RANK (TF multi_worker)


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of a data-parallel cell meet: the suite's launcher plus this node's rank. Not
    part of the cell (and its hash): the same cell measured on other machines is the same cell."""

    hosts: tuple[str, ...] = ("localhost",)
    port: int = 29500
    rdzv_backend: str = "static"
    node_rank: int = 0

    @classmethod
    def from_launcher(cls, launcher: Any, node_rank: int = 0) -> "Rendezvous":
        """From a suite's `launcher:` (hlbench.suite.Launcher, or None for single-device suites)."""
        if launcher is None:
            return cls(node_rank=node_rank)
        return cls(tuple(launcher.hosts or ["localhost"]), launcher.port, launcher.rdzv_backend, node_rank)


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]  # added to the parent's environment


def rank_from_env() -> int:
    """This process's rank: torchrun's RANK, or the runner's HLBENCH_RANK (TF multi_worker), else 0."""
    return int(os.environ.get("RANK") or os.environ.get(RANK_ENV) or 0)


def commands(cell: Any, cell_file: Path, result_file: Path, rdzv: Rendezvous, group_id: str) -> list[Command]:
    """The processes this node starts for `cell` (a Cell). `group_id` names the cell's group so that
    nodes meeting at the same rendezvous agree on which cell they are running."""
    worker = ["-m", "hlbench.worker", str(cell_file), str(result_file)]
    launch = cell.launch
    if launch is None or launch["strategy"] == "mirrored":
        return [Command([sys.executable, *worker], {})]
    if launch["strategy"] in ("ddp", "fsdp"):
        return [Command([sys.executable, *torchrun_args(launch, rdzv, group_id), *worker], {})]
    if launch["strategy"] == "multi_worker":
        return tf_worker_commands(launch, rdzv, worker)
    raise ValueError(f"unknown launch strategy {launch['strategy']!r}")


def torchrun_args(launch: dict[str, Any], rdzv: Rendezvous, group_id: str) -> list[str]:
    args = ["-m", "torch.distributed.run", f"--nnodes={launch['nnodes']}",
            f"--nproc-per-node={launch['nproc_per_node']}",
            "--max-restarts=0",  # a failed rank fails the cell: a benchmark does not retry behind its back
            "--monitor-interval=0.1",  # how soon torchrun notices a dead rank and stops the others
            "--tee=3"]  # both streams of every rank into the log, each line prefixed with its rank
    if rdzv.rdzv_backend == "static":
        args += [f"--node-rank={rdzv.node_rank}", f"--master-addr={rdzv.hosts[0]}", f"--master-port={rdzv.port}"]
    else:
        args += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv.hosts[0]}:{rdzv.port}", f"--rdzv-id={group_id}"]
    return args


def tf_worker_commands(launch: dict[str, Any], rdzv: Rendezvous, worker: list[str]) -> list[Command]:
    """One process per local rank, with the whole cluster in TF_CONFIG (task index = global rank)."""
    per_node = launch["nproc_per_node"]
    cluster = [f"{host}:{rdzv.port + 1 + local}" for host in rdzv.hosts for local in range(per_node)]
    visible = _visible_gpus()
    out = []
    for local in range(per_node):
        rank = rdzv.node_rank * per_node + local
        env = {"TF_CONFIG": json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": rank}}),
               RANK_ENV: str(rank), "LOCAL_RANK": str(local)}
        if visible:  # one GPU per process, as torchrun's ranks use cuda:LOCAL_RANK
            env["CUDA_VISIBLE_DEVICES"] = visible[local % len(visible)]
        out.append(Command([sys.executable, *worker], env))
    return out


def _visible_gpus() -> list[str]:
    """GPU ids a child may be given (CUDA_VISIBLE_DEVICES's entries, else NVML's count); [] without GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    from hlbench.telemetry.nvml import gpu_count

    return [str(i) for i in range(gpu_count())]


class GroupTimeout(Exception):
    pass


class ProcessGroup:
    """The processes of one cell, started in new sessions (a terminal's Ctrl-C reaches only the parent,
    which stops them itself), waited for and killed together."""

    def __init__(self, cmds: list[Command], log_path: Path, extra_env: dict[str, str]) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.known: dict[int, psutil.Process] = {}  # every descendant seen, so none survives the group
        self.first_failed: int | None = None  # index of the first process seen to fail
        with open(log_path, "ab") as log:
            for cmd in cmds:
                self.procs.append(subprocess.Popen(
                    cmd.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    env={**os.environ, **extra_env, **cmd.env}))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait(self, timeout_s: float, on_failure_grace_s: float = 2.0,
             cancel: threading.Event | None = None) -> list[int]:
        """Exit codes in start order once all have ended. When one process fails the others get
        `on_failure_grace_s` to write their own results, then the group is killed (a peer blocked in a
        collective would otherwise wait for the dead rank until the timeout). GroupTimeout past
        timeout_s; KeyboardInterrupt when `cancel` is set (another thread was interrupted)."""
        deadline = time.monotonic() + timeout_s
        failed_at: float | None = None
        while True:
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            self._remember_descendants()
            codes = [p.poll() for p in self.procs]
            if all(c is not None for c in codes):
                self.kill()  # leftovers of a rank that exited while its children still ran
                return [int(c) for c in codes]  # type: ignore[arg-type]
            now = time.monotonic()
            if failed_at is None and any(c not in (None, 0) for c in codes):
                failed_at = now
                # the first to fail is the cause: the others are killed below, and then fail too
                self.first_failed = next(i for i, c in enumerate(codes) if c not in (None, 0))
            if failed_at is not None and now - failed_at > on_failure_grace_s:
                self.kill()
                return [int(p.returncode) for p in self.procs]
            if now > deadline:
                self.kill()
                raise GroupTimeout()
            time.sleep(POLL_S)

    def _remember_descendants(self) -> None:
        for proc in self.procs:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    self.known.setdefault(child.pid, child)
            except psutil.Error:
                pass  # exited between poll and here

    def kill(self) -> None:
        """SIGKILL every process of the group: the roots' process groups, and each descendant seen while
        it ran (psutil checks a PID's creation time, so a reused PID is never hit)."""
        self._remember_descendants()
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # already gone
        for child in self.known.values():
            try:
                child.kill()
            except psutil.Error:
                pass
        for proc in self.procs:
            proc.wait()
        psutil.wait_procs(list(self.known.values()), timeout=5)


def rank_results(result_file: Path) -> dict[int, dict[str, Any]]:
    """rank -> that rank's own outcome, for the ranks of this node that wrote one."""
    out = {}
    for path in result_file.parent.glob(f"{result_file.stem}.rank*.json"):
        try:
            out[int(path.stem.rpartition(".rank")[2])] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # torn or foreign: the group's exit codes still tell what happened
    return dict(sorted(out.items()))


def rank_result_path(result_file: Path, rank: int) -> Path:
    return result_file.with_name(f"{result_file.stem}.rank{rank}.json")


def failed_rank_outcome(ranks: dict[int, dict[str, Any]], first: int | None = None) -> dict[str, Any] | None:
    """One record's outcome from the rank that failed in Python (oom, error) — `first` when given (the
    first to fail), else the lowest — naming it and the other ranks that failed; None when none did."""
    failed = {r: res for r, res in ranks.items() if res.get("status") in ("oom", "error")}
    if not failed:
        return None
    if first is None or first not in failed:
        first = next(iter(failed))
    res = failed[first]
    also = [r for r in failed if r != first]
    reason = f"rank {first}: {res.get('reason')}" + (f" (ranks {also} failed too)" if also else "")
    return {"status": res["status"], "reason": reason, "error": {**(res.get("error") or {}), "rank": first},
            "env_framework": res.get("framework_env")}


def wait_group(group: ProcessGroup, timeout_s: float, cancel: threading.Event | None = None) -> list[int]:
    """ProcessGroup.wait, killing the group on any exception (KeyboardInterrupt included)."""
    try:
        return group.wait(timeout_s, cancel=cancel)
    except BaseException:
        group.kill()
        raise


def local_gpus(cell: Any) -> list[int] | None:
    """NVML indices of the GPUs this node's processes of a data-parallel cell use (local ranks 0…P-1
    through CUDA_VISIBLE_DEVICES); None for a single-device cell (telemetry maps its device itself)."""
    if cell.launch is None or cell.device == "cpu":
        return None
    visible = _visible_gpus()
    if not visible:
        return []
    ids = visible[: cell.launch["nproc_per_node"]]
    return [int(i) for i in ids if i.isdigit()]


_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)


def torchrun_root_cause(log_text: str) -> tuple[int, int] | None:
    """(rank, exit code) of the first failure torchrun reports in its summary, if it printed one."""
    match = _ROOT_CAUSE.search(log_text)
    return (int(match.group(1)), int(match.group(2))) if match else None
