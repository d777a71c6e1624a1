"""The `hlbench` command: thin subcommands over the library.

Bad input (suite, arguments, records file) prints one line `hlbench: error: ...` and exits 2 before
anything runs.
"""

from __future__ import annotations

import argparse
import importlib
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
    "hlbench.commands.env",
    "hlbench.commands.suites",
    "hlbench.commands.compare",
    "hlbench.commands.baseline",
    "hlbench.commands.table",
    "hlbench.commands.report",
    "hlbench.commands.parity",
    "hlbench.commands.export",
)


START_HERE = """\
start here:
  hlbench suites                  the suites shipped with hlbench, one line each
  hlbench run smoke --dry-run     validate a suite and list its cells (a name or a YAML file)
  hlbench run smoke               train them: records in results/smoke/<run-id>.jsonl
  hlbench init my-suite           write a commented starter suite to edit
  hlbench COMMAND --help          the options of a command
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        # A missing subcommand (bare `hlbench`, `hlbench baseline`) is a question, not a typo:
        # answer it with the command list. Still exit 2, as argparse does for a missing argument.
        if _missing_subcommand(self, message):
            self.print_help(sys.stderr)
            self.exit(EXIT_USAGE, f"{self.prog}: error: choose a command (above)\n")
        # argparse's default exit code is already 2; keep the message to one line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _missing_subcommand(parser: argparse.ArgumentParser, message: str) -> bool:
    required = message.removeprefix("the following arguments are required: ")
    if required == message:
        return False
    first = required.split(",")[0].strip()
    return any(
        isinstance(a, argparse._SubParsersAction) and first in (a.dest, a.metavar)
        for a in parser._actions
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hlbench",
        description="Benchmark language-model training across precision × accumulation × pruning.",
        epilog=START_HERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hlbench {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND", title="commands"
    )
    for module in COMMAND_MODULES:  # `hlbench --help` lists them in this order
        importlib.import_module(module).register(sub)
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    # First thing, while the heavy imports still run: SIGTERM, like Ctrl-C, unwinds (children of
    # `with` blocks are stopped) and ends in one line and exit 130; the runner installs its own
    # handlers while cells run.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        args = build_parser().parse_args(argv)
        status = args.func(args)
        if status == EXIT_INTERRUPTED:  # `run` turned a KeyboardInterrupt into its status
            _forget_keyboard_interrupt()
        return status
    except UsageError as exc:
        print(f"hlbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hlbench: interrupted", file=sys.stderr)
        _forget_keyboard_interrupt()
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _forget_keyboard_interrupt() -> None:
    """A KeyboardInterrupt raised inside code run by exec() of a string (dataclasses and pydantic
    build methods so, during imports) marks it unhandled in CPython even when caught, and the
    interpreter then ends by SIGINT rather than with our exit status. exec() of a string clears
    the mark."""
    exec("None")


if __name__ == "__main__":
    sys.exit(main())
