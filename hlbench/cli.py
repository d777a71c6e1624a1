"""The `hlbench` command: thin subcommands over the library.

Bad input (suite, arguments, records file) prints one line `hlbench: error: ...` and exits 2 before
anything runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from hlbench import __version__
from hlbench.errors import UsageError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

# Subcommands that live in their own module (one idea each). Each module defines
# `register(sub: argparse._SubParsersAction) -> None`, which adds its parser and sets `func`;
# heavy imports (pandas, scipy, a framework) stay inside the command function so `--help` is fast.
RUN_MODULE = "hlbench.commands.run"
COMMAND_MODULES: tuple[str, ...] = (
    RUN_MODULE,
    "hlbench.commands.compare",
    "hlbench.commands.baseline",
    "hlbench.commands.table",
    "hlbench.commands.report",
    "hlbench.commands.parity",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        # argparse's default exit code is already 2; keep the message to one line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hlbench",
        description="Benchmark language-model training across precision × accumulation × pruning.",
    )
    parser.add_argument("--version", action="version", version=f"hlbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
        if module == RUN_MODULE:  # `hlbench --help` lists run, then env, then the others
            _register_env(sub)
    return parser


def _register_env(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser(
        "env",
        help="print what this machine offers (JSON): host, GPUs via NVML, frameworks, the measured "
        "CPU GEMM peak",
    )
    env.add_argument(
        "--no-calibrate", action="store_true", help="skip the CPU GEMM measurement (~1 s)"
    )
    env.set_defaults(func=cmd_env)


def cmd_env(args: argparse.Namespace) -> int:
    from hlbench.backends import registry
    from hlbench.env import host_environment, machine_report

    frameworks = {name: spec.framework_installed() for name, spec in registry().items()}
    report = {
        "host": host_environment(),
        "backends_installed": frameworks,
        **machine_report(not args.no_calibrate),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return EXIT_OK


def _exit_interrupted(signum: int, frame: Any) -> None:
    """Ctrl-C or SIGTERM outside the cells (imports, validation, the summary): nothing to clean
    up, so one line and exit 130 at once. Not a KeyboardInterrupt: raised inside code that an
    import runs through exec(), CPython would still end the process by SIGINT after main returned.
    The runner installs its own handlers while cells run (their workers are stopped first)."""
    os.write(2, b"hlbench: interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> int:
    # First thing, while the heavy imports still run: SIGINT and SIGTERM exit 130 with one line.
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, _exit_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        print(f"hlbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for signum, previous in handlers.items():
            signal.signal(signum, previous)


if __name__ == "__main__":
    sys.exit(main())
