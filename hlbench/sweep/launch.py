"""Starting a cell's worker processes and waiting for them as one group.

A single-device cell is one `python -m hlbench.worker` process. A data-parallel cell (`cell.launch`,
from the suite's `launcher:`) is started with the engine its framework provides, never a home-made
one:
- PyTorch DDP / FSDP: `python -m torch.distributed.run` (torchrun), which starts nproc_per_node
  ranks on this node, sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR, and tears the group down
  when one rank fails (its own --max-restarts 0 and monitor);
- TensorFlow MirroredStrategy: one process that drives all its devices itself;
- TensorFlow MultiWorkerMirroredStrategy: nproc_per_node processes on this node, each with the
  TF_CONFIG that tf.distribute reads (the whole cluster's addresses and the process's task index).

Whatever the engine, the parent treats the processes as one group: one timeout for all of them, and
when the group ends (done, failed, timed out or interrupted) every process that belonged to it is
killed, including ranks started in their own sessions (torchrun starts each rank with
start_new_session), so none is left hanging. Each process writes its own `result.rank<R>.json`;
rank 0 (the chief) also writes `result.json` with the figures of all ranks combined
(hlbench.worker.train).

Every interpreter of a cell starts with the safe import path (`python -P`, PYTHONSAFEPATH for
those torchrun starts), so nothing in the current directory is imported, and dies with this
process even when it is SIGKILLed (hlbench.worker.orphan).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from hlbench.handoff import PARENT_PID_ENV, RANK_ENV, WORKER_MODULE, cuda_visible_devices
from hlbench.sweep.memwatch import MemoryWatch

TORCHRUN_MODULE = "torch.distributed.run"
ORPHAN_GUARD_MODULE = "hlbench.worker.orphan"  # runs torchrun's agent so that it dies with us
POLL_S = 0.2  # how often the parent looks at the group (it sleeps in between, never spins)


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks of a data-parallel cell meet: the suite's launcher plus this node's rank. Not
    part of the cell (and its hash): the same cell measured on other machines is the same cell."""

    hosts: tuple[str, ...] = ("localhost",)
    port: int = 29500
    rdzv_backend: str = "static"
    node_rank: int = 0

    @classmethod
    def from_launcher(cls, launcher: Any, node_rank: int = 0) -> Rendezvous:
        """From a suite's `launcher:` (hlbench.suite.Launcher, or None for single-device suites)."""
        if launcher is None:
            return cls(node_rank=node_rank)
        return cls(
            tuple(launcher.hosts or ["localhost"]), launcher.port, launcher.rdzv_backend, node_rank
        )


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]  # added to the parent's environment


def commands(
    cell: Any, cell_file: Path, result_file: Path, rdzv: Rendezvous, group_id: str, log_dir: Path
) -> list[Command]:
    """The processes this node starts for `cell` (a Cell). `group_id` names the cell's group so that
    nodes meeting at a c10d rendezvous agree on which cell they are running; `log_dir`: torchrun's
    per-rank files (else it leaves a directory per cell in /tmp)."""
    files = [str(cell_file), str(result_file)]
    launch = cell.launch
    if launch is None or launch.strategy == "mirrored":
        return [Command([*python_module(WORKER_MODULE), *files], {**safe_env(), RANK_ENV: "0"})]
    if launch.strategy in ("ddp", "fsdp"):
        # torchrun's agent dies with this process (hlbench.worker.orphan), its ranks with it; it
        # starts them as `python -u -m hlbench.worker`, safe through PYTHONSAFEPATH
        agent = python_module(ORPHAN_GUARD_MODULE)
        ranks = ["-m", WORKER_MODULE, *files]
        return [
            Command(
                [*agent, TORCHRUN_MODULE, *torchrun_args(launch, rdzv, group_id, log_dir), *ranks],
                {**safe_env(), RANK_ENV: ""},
            )
        ]
    if launch.strategy == "multi_worker":
        return tf_worker_commands(launch, rdzv, [*python_module(WORKER_MODULE), *files])
    raise ValueError(f"unknown launch strategy {launch.strategy!r}")


def python_module(module: str) -> list[str]:
    """`python -m MODULE` with the safe import path: neither the current directory nor the
    script's is put on sys.path (a `psutil.py` where the user runs hlbench must not be imported,
    nor an untrusted checkout's code run). Python 3.10 has no -P: drop sys.path[0] by hand."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module]
    run = f"import runpy, sys; del sys.path[0]; runpy.run_module({module!r}, run_name='__main__', "
    return [sys.executable, "-c", run + "alter_sys=True)"]


def safe_env() -> dict[str, str]:
    """What every process of a cell gets besides its own settings: this process's pid (a worker
    dies with it, hlbench.worker.orphan), PYTHONSAFEPATH for the interpreters others start
    (torchrun's ranks), and hlbench's own directory on PYTHONPATH when this process found hlbench
    only through the current directory (which the worker no longer puts on its path)."""
    env = {PARENT_PID_ENV: str(os.getpid()), "PYTHONSAFEPATH": "1"}
    root = Path(__file__).resolve().parents[2]
    cwd = Path.cwd().resolve()
    elsewhere = [Path(p).resolve() for p in sys.path if p and Path(p).resolve() != cwd]
    if root not in elsewhere:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(root)]))
    return env


def torchrun_args(
    launch: dict[str, Any], rdzv: Rendezvous, group_id: str, log_dir: Path
) -> list[str]:
    """torchrun's options (`python -m torch.distributed.run OPTIONS -m hlbench.worker ...`)."""
    args = [
        f"--nnodes={launch.nnodes}",
        f"--log-dir={log_dir}",
        f"--nproc-per-node={launch.nproc_per_node}",
        # a failed rank fails the cell: a benchmark does not retry behind its back
        "--max-restarts=0",
        "--monitor-interval=0.1",  # how soon torchrun notices a dead rank and stops the others
        "--tee=3",  # both streams of every rank into the log, each line prefixed with its rank
    ]
    if rdzv.rdzv_backend == "static":
        args += [
            f"--node-rank={rdzv.node_rank}",
            f"--master-addr={rdzv.hosts[0]}",
            f"--master-port={rdzv.port}",
        ]
    else:
        args += [
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv.hosts[0]}:{rdzv.port}",
            f"--rdzv-id={group_id}",
        ]
    return args


def tf_worker_commands(
    launch: dict[str, Any], rdzv: Rendezvous, worker: list[str]
) -> list[Command]:
    """One process per local rank, with the whole cluster in TF_CONFIG (task index = global
    rank)."""
    per_node = launch.nproc_per_node
    cluster = [
        f"{host}:{rdzv.port + 1 + local}" for host in rdzv.hosts for local in range(per_node)
    ]
    visible = visible_gpus()
    out = []
    for local in range(per_node):
        rank = rdzv.node_rank * per_node + local
        env = {
            **safe_env(),
            "TF_CONFIG": json.dumps(
                {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": rank}}
            ),
            RANK_ENV: str(rank),
            "LOCAL_RANK": str(local),
        }
        if visible:  # one GPU per process, as torchrun's ranks use cuda:LOCAL_RANK
            env["CUDA_VISIBLE_DEVICES"] = visible[local % len(visible)]
        out.append(Command(worker, env))
    return out


def visible_gpus() -> list[str]:
    """GPU ids a child may be given (CUDA_VISIBLE_DEVICES's entries, else NVML's count); [] without
    GPUs."""
    visible = cuda_visible_devices()
    if visible is not None:
        return visible
    from hlbench.telemetry.nvml import gpu_count

    return [str(i) for i in range(gpu_count())]


class GroupTimeout(Exception):
    pass


# starts a one-process group another way, given its environment additions and its log file
Fork = Callable[[dict[str, str], Path], Any]


class ProcessGroup:
    """The processes of one cell, started in new sessions (a terminal's Ctrl-C reaches only the
    parent, which stops them itself), waited for and killed together."""

    def __init__(
        self,
        cmds: list[Command],
        log_path: Path,
        extra_env: dict[str, str],
        fork: Fork | None = None,
    ) -> None:
        """`fork`: for a one-process group, a way to start it forked from a pre-imported worker
        (hlbench.sweep.zygote) given its environment additions and log; None from it, or no
        `fork`, starts it with subprocess."""
        self.procs: list[Any] = []  # subprocess.Popen, or what `fork` returns (the same methods)
        # every descendant seen, so none survives the group
        self.known: dict[int, psutil.Process] = {}
        # index -> exit code of the processes that ended by themselves, not killed by the group
        # (when one fails the others are killed, and their SIGKILL says nothing about what went
        # wrong)
        self.ended_alone: dict[int, int] = {}
        # how much memory the group held, for whether a SIGKILL was the OOM killer's
        self.memory = MemoryWatch()
        self.forked = False
        if fork is not None and len(cmds) == 1:
            forked = fork({**extra_env, **cmds[0].env}, log_path)
            if forked is not None:
                self.procs.append(forked)
                self.forked = True
                return
        with open(log_path, "ab") as log:
            try:
                for cmd in cmds:
                    self.procs.append(
                        subprocess.Popen(
                            cmd.argv,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env={**os.environ, **extra_env, **cmd.env},
                        )
                    )
            except BaseException:  # a later one could not start: none of the group may outlive it
                self.kill()
                raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait(
        self,
        timeout_s: float,
        on_failure_grace_s: float = 2.0,
        cancel: threading.Event | None = None,
    ) -> list[int]:
        """Exit codes in start order once all have ended. When one process fails the others get
        `on_failure_grace_s` to write their own results, then the group is killed (a peer blocked in
        a collective would otherwise wait for the dead rank until the timeout). GroupTimeout past
        timeout_s; KeyboardInterrupt when `cancel` is set (another thread was interrupted)."""
        deadline = time.monotonic() + timeout_s
        failed_at: float | None = None
        while True:
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            self._remember_descendants()
            codes = [p.poll() for p in self.procs]
            self.ended_alone = {i: int(c) for i, c in enumerate(codes) if c is not None}
            if all(c is not None for c in codes):
                self.kill()  # leftovers of a rank that exited while its children still ran
                return [int(c) for c in codes]  # type: ignore[arg-type]
            now = time.monotonic()
            if failed_at is None and any(c not in (None, 0) for c in codes):
                failed_at = now
            if failed_at is not None and now - failed_at > on_failure_grace_s:
                self.kill()
                return [int(p.returncode) for p in self.procs]
            if now > deadline:
                self.kill()
                raise GroupTimeout()
            time.sleep(POLL_S)

    def _remember_descendants(self) -> None:
        roots = []
        for proc in self.procs:
            try:
                roots.append(psutil.Process(proc.pid))
                for child in roots[-1].children(recursive=True):
                    self.known.setdefault(child.pid, child)
            except psutil.Error:
                pass  # exited between poll and here
        self.memory.sample([*roots, *self.known.values()])

    def kill(self) -> None:
        """SIGKILL every process of the group: the roots' process groups, and each descendant seen
        while it ran (psutil checks a PID's creation time, so a reused PID is never hit)."""
        self._remember_descendants()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
                os.killpg(proc.pid, signal.SIGKILL)
        for child in self.known.values():
            with contextlib.suppress(psutil.Error):
                child.kill()
        for proc in self.procs:
            proc.wait()
        psutil.wait_procs(list(self.known.values()), timeout=5)


def too_few_gpus(cell: Any) -> str | None:
    """Why this node cannot place a data-parallel cell's ranks one per GPU, or None. Without any GPU
    the ranks run on the CPU (device auto) or skip themselves (device cuda)."""
    if cell.launch is None or cell.device == "cpu":
        return None
    visible, wanted = len(visible_gpus()), cell.launch.nproc_per_node
    if 0 < visible < wanted:
        return (
            f"launcher.nproc_per_node {wanted} needs {wanted} GPUs on this node, one per rank; "
            f"{visible} visible"
        )
    return None


def local_gpus(cell: Any) -> list[int] | None:
    """NVML indices of the GPUs this node's processes of a data-parallel cell use (local ranks
    0…P-1 through CUDA_VISIBLE_DEVICES); None for a single-device cell (telemetry maps its device
    itself)."""
    if cell.launch is None or cell.device == "cpu":
        return None
    visible = visible_gpus()
    if not visible:
        return []
    ids = visible[: cell.launch.nproc_per_node]
    return [int(i) for i in ids if i.isdigit()]
