"""A pre-imported worker: `python -m hlbench.worker.zygote BACKEND` imports one backend's framework
once, then forks a fresh worker process per cell on request.

Importing PyTorch takes about 1.5 s and TensorFlow with Keras about 3.5 s on a 2-core CPU: most of a
tiny cell's worker wall time. The zygote pays it once per run and framework. Each cell still runs
in a process of its own that exits when the cell ends, so no allocator cache, compiled graph, RNG
stream or device context passes from one cell to the next: the zygote itself only imports, it never
builds a model, runs an op or touches a device (PyTorch initialises CUDA, and TensorFlow its
runtime and devices, lazily on first use, which is in the forked child). The zygote starts no
thread of its own; the few a framework's import starts (an allocator's background thread) are idle,
and a fork copies only the forking thread, with the allocators' locks reset by their own fork
handlers.

Protocol (the parent's side is hlbench.sweep.zygote): one JSON object per line on stdin,
`{"argv": [CELL_JSON, RESULT_JSON], "env": {...}, "log": PATH}`; on stdout, `{"ready": BOOL}`
once after the import, `{"pid": PID}` for each request and `{"exit": PID, "code": CODE}` when that
child ends (CODE as subprocess.Popen.returncode: negative for a signal). Closing stdin ends the
zygote, and it kills the children still running first. It dies with `hlbench run` as every worker
does (hlbench.worker.orphan), and its children die with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sys
import traceback
from typing import Any

from hlbench.worker.orphan import die_with_parent

REAP_EVERY_S = 0.05  # how often finished children are looked for between requests


def preload(backend: str) -> bool:
    """Import the backend's adapter module and, with it, its framework. False (and the reason on
    stderr) when that fails: the children then import it themselves and report the failure as the
    cell's record, exactly as a freshly started worker would."""
    from hlbench.backends import get_spec
    from hlbench.errors import UsageError

    try:
        module = get_spec(backend).adapter.partition(":")[0]
        __import__(module)
        import hlbench.worker.main  # noqa: F401  (the training loop, records, telemetry helpers)
    except (Exception, SystemExit, UsageError) as exc:
        print(f"hlbench.worker.zygote: preloading {backend!r} failed: {exc}", file=sys.stderr)
        return False
    return True


def run_child(request: dict[str, Any], proto_fds: tuple[int, int]) -> None:
    """In the forked child: become a worker started as `python -m hlbench.worker ARGV` would be
    (own session, output to the cell's log, the cell's environment), run it, and exit. Never
    returns into the zygote's loop."""
    code = 1
    try:
        os.setsid()  # the parent kills a cell by its process group, as for a spawned worker
        for fd in proto_fds:
            os.close(fd)
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from hlbench.worker.main import main

        code = main(list(request["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(proto_in: int, proto_out: int) -> None:
    children: set[int] = set()

    def send(message: dict[str, Any]) -> None:
        os.write(proto_out, (json.dumps(message) + "\n").encode())

    selector = selectors.DefaultSelector()
    selector.register(proto_in, selectors.EVENT_READ)
    pending = b""
    try:
        while True:
            if selector.select(REAP_EVERY_S):
                chunk = os.read(proto_in, 65536)
                if not chunk:
                    return  # the parent closed the pipe, or died
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    pid = fork_child(json.loads(line), (proto_in, proto_out))
                    children.add(pid)
                    send({"pid": pid})
            for pid, code in reap(children):
                send({"exit": pid, "code": code})
    finally:
        for pid in children:
            with contextlib.suppress(OSError):  # it ended already
                os.killpg(pid, signal.SIGKILL)


def fork_child(request: dict[str, Any], proto_fds: tuple[int, int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        run_child(request, proto_fds)
    return pid


def reap(children: set[int]) -> list[tuple[int, int]]:
    ended = []
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def main(argv: list[str]) -> int:
    die_with_parent()
    if len(argv) != 1:
        print("usage: python -m hlbench.worker.zygote BACKEND", file=sys.stderr)
        return 2
    # The protocol gets private descriptors; fds 0 and 1 then belong to whatever the children and
    # the imports print, never to the pipe the parent parses.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(null_fd, 0)
    os.dup2(2, 1)
    os.close(null_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it by closing its stdin
    ready = preload(argv[0])
    os.write(proto_out, (json.dumps({"ready": ready}) + "\n").encode())
    serve(proto_in, proto_out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
