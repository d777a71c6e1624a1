"""`hlbench suites` lists the shipped suites; `hlbench init [NAME]` writes a starter suite."""

from __future__ import annotations

import argparse
import sys

# hlbench.suite is imported inside the commands: it loads pydantic, and `hlbench --help` must not.
DEFAULT_NAME = "my-suite"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "suites",
        help="list the suites shipped with hlbench (run one by name: hlbench run smoke)",
        description="List the suites shipped inside the package, one line each: the name "
        "`hlbench run NAME` takes and the suite's description.",
    )
    p.add_argument(
        "--paths", action="store_true", help="print each suite's file instead of its description"
    )
    p.set_defaults(func=cmd_suites)

    init = sub.add_parser(
        "init",
        help="write a commented starter suite (NAME.yaml) to edit",
        description="Write NAME.yaml in the current directory (or NAME, when it ends in .yaml): a "
        "small suite with every common key commented, or a copy of a shipped suite. An existing "
        "file is never overwritten.",
    )
    init.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help=f"the suite's name, or a .yaml path (default: {DEFAULT_NAME})",
    )
    init.add_argument(
        "--from",
        dest="source",
        metavar="SUITE",
        help="copy this shipped suite instead (e.g. default), renamed to NAME",
    )
    init.set_defaults(func=cmd_init)


def cmd_suites(args: argparse.Namespace) -> int:
    from hlbench.suite import shipped

    found = shipped.shipped()
    width = max((len(name) for name in found), default=0)
    for name, path in found.items():
        print(f"{name:<{width}}  {path if args.paths else shipped.description(path)}")
    if not found:
        print(f"no suites shipped in {shipped.SHIPPED_DIR}", file=sys.stderr)
        return 1
    print(
        "run one: hlbench run NAME [--dry-run]; copy one to edit: hlbench init NEW --from NAME",
        file=sys.stderr,
    )
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from hlbench.suite import shipped

    path = shipped.write_starter(args.name or DEFAULT_NAME, args.source)
    print(f"wrote {path}")
    print(f"next: hlbench run {path} --dry-run", file=sys.stderr)
    return 0
