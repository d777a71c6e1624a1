"""A worker dies with the `hlbench run` that started it: a parent killed by SIGKILL (or the OOM
killer) cannot kill its cell's processes itself, and an orphaned worker would go on holding the
GPU long past the cell's timeout.

On Linux each process asks the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG),
first thing at startup, then checks that the parent it was started by is still there (it may have
died before the prctl). The chain is unbroken for data-parallel cells: torchrun's agent is started
through this module (`python -P -m hlbench.worker.orphan torch.distributed.run ARGS`), so it dies
with `hlbench run`, and its ranks (hlbench.worker too) die with it. Elsewhere a daemon thread
watches the parent's pid instead.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import threading
import time

from hlbench.handoff import PARENT_PID_ENV

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_S = 0.5


def die_with_parent() -> None:
    """SIGKILL for this process when its parent dies; exits at once if the run is gone already."""
    parent = os.getppid()
    if not (sys.platform.startswith("linux") and _set_pdeathsig()):
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if run_is_gone():
        _kill_self()


def run_is_gone() -> bool:
    """Whether the `hlbench run` this process belongs to has died (this process was reparented,
    or the run's pid no longer exists)."""
    if os.getppid() == 1:
        return True
    run_pid = os.environ.get(PARENT_PID_ENV, "")
    if not run_pid.isdigit() or int(run_pid) == os.getppid():
        return False
    try:
        os.kill(int(run_pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists (another user's: not ours, but not proof of a death either)
    return False


def _set_pdeathsig() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    _kill_self()


def _kill_self() -> None:
    sys.stderr.write("hlbench.worker: the hlbench run that started this process is gone\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    """`python -m hlbench.worker.orphan MODULE ARGS...`: run MODULE as __main__ (torchrun's
    agent), dying with this process's parent."""
    die_with_parent()
    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
