"""The parent's side of the pre-imported workers (hlbench.worker.zygote): one zygote per backend,
started the first time a cell of that backend runs and closed when the run ends.

A cell started through a zygote is a forked process in its own session, exactly as a spawned
`python -m hlbench.worker` is, so ProcessGroup waits for it, samples its memory and kills it the
same way; only its start (no interpreter start-up, no framework import) and its exit status (which
the zygote, its parent, reports) differ. Used for single-process cells on the run's own devices:
data-parallel cells keep their launchers, `--devices` cells, which narrow CUDA_VISIBLE_DEVICES per
cell, keep a fresh interpreter, and so do cells that may take a GPU unless HLBENCH_PREIMPORT=1
(`Zygotes.applies`). HLBENCH_PREIMPORT=0 turns it off.

A zygote is started only when a cell needs it and the cell waits for its import, so a framework's
import never runs beside another cell's measured windows.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from hlbench.sweep.launch import python_module, safe_env, visible_gpus

ZYGOTE_MODULE = "hlbench.worker.zygote"
PREIMPORT_ENV = "HLBENCH_PREIMPORT"  # "0": every cell in a freshly started interpreter
READY_TIMEOUT_S = 300.0  # a framework import on a loaded machine; past it the cell is spawned
FORK_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0


class ZygoteUnavailable(Exception):
    """The zygote could not start or fork: the caller starts the worker the usual way."""


def mode() -> str:
    """HLBENCH_PREIMPORT: "off" (0), "on" (1: every single-process cell, GPU ones too) or "auto"
    (unset: cells that run on the CPU)."""
    value = os.environ.get(PREIMPORT_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "on" if value in ("1", "true", "yes", "on") else "auto"


class Zygote:
    """One `python -m hlbench.worker.zygote BACKEND` and a reader of its reports."""

    def __init__(self, backend: str, log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*python_module(ZYGOTE_MODULE), backend],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a terminal's Ctrl-C reaches only the parent
                env={**os.environ, **safe_env()},
            )
        self._changed = threading.Condition()
        self._ready: bool | None = None
        self._pids: list[int] = []
        self.exits: dict[int, int] = {}
        self.gone = False
        self._lock = threading.Lock()  # one request (and its pid reply) at a time
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            message: dict[str, Any] = json.loads(line)
            with self._changed:
                if "ready" in message:
                    self._ready = bool(message["ready"])
                elif "exit" in message:
                    self.exits[int(message["exit"])] = int(message["code"])
                elif "pid" in message:
                    self._pids.append(int(message["pid"]))
                self._changed.notify_all()
        with self._changed:
            self.gone = True
            self._changed.notify_all()

    def _await(self, predicate: Any, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate() or self.gone, timeout_s) and (
                not self.gone or bool(predicate())
            )

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> ForkedProcess:
        with self._lock:
            if not self._await(lambda: self._ready is not None, READY_TIMEOUT_S):
                raise ZygoteUnavailable("the zygote did not finish its import")
            before = len(self._pids)
            request = {"argv": argv, "env": env, "log": str(log_path)}
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except OSError as exc:
                raise ZygoteUnavailable(f"the zygote is gone: {exc}") from None
            if not self._await(lambda: len(self._pids) > before, FORK_TIMEOUT_S):
                raise ZygoteUnavailable("the zygote did not fork")
            return ForkedProcess(self, self._pids[before])

    def exit_code(self, pid: int) -> int | None:
        with self._changed:
            if pid in self.exits:
                return self.exits[pid]
            # a zygote that died took its children with it (they die with their parent)
            return -9 if self.gone else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkedProcess:
    """What ProcessGroup needs of a subprocess.Popen, for a child of the zygote."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self._zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.02)
        return int(self.returncode)  # type: ignore[arg-type]


class Zygotes:
    """The run's zygotes, one per backend, each started on first use."""

    def __init__(self, log_dir: Path, forced: bool = False) -> None:
        self._log_dir = log_dir
        self._forced = forced  # HLBENCH_PREIMPORT=1: GPU cells too
        self._gpus: bool | None = None  # whether this node has a GPU a cell could take
        self._zygotes: dict[str, Zygote] = {}
        self._failed: set[str] = set()  # backends whose zygote could not start: spawned

    def applies(self, device: str) -> bool:
        """Whether a cell on `device` (the suite's: cpu, cuda, auto) is forked. By default only
        cells that run on the CPU: a process that loaded CUDA's libraries cannot be trusted to fork
        a CUDA-capable child on every driver, and the import is a small part of a GPU cell."""
        if self._forced or device == "cpu":
            return True
        if self._gpus is None:
            self._gpus = bool(visible_gpus())
        return device == "auto" and not self._gpus

    def start(
        self, backend: str, argv: list[str], env: dict[str, str], log_path: Path
    ) -> ForkedProcess | None:
        """The cell's worker forked from `backend`'s zygote, or None when it cannot be (the
        caller spawns it)."""
        if backend in self._failed:
            return None
        zygote = self._zygotes.get(backend)
        try:
            if zygote is None:
                zygote = Zygote(backend, self._log_dir / f"zygote-{backend}.log")
                self._zygotes[backend] = zygote
            return zygote.start(argv, env, log_path)
        except (OSError, ZygoteUnavailable):
            self._failed.add(backend)
            return None

    def close(self) -> None:
        for zygote in self._zygotes.values():
            zygote.close()
        self._zygotes.clear()
