"""The layout rules of docs/design.md, checked on the source with `ast`: sizes, import directions,
no cycles, framework imports only in backends, no private names across modules."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hlbench"
FRAMEWORKS = ("torch", "tensorflow", "keras")
MAX_TOP_LEVEL_FILES = 12
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(modules()[name].read_text(), filename=str(modules()[name]))


def imports(name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) of every import in the module, lazy ones too."""
    out = []
    package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, [alias.name for alias in node.names], node.lineno))
    return out


def hlbench_edges(name: str) -> set[str]:
    """The hlbench modules `name` imports; `from pkg import mod` counts as importing pkg.mod."""
    edges = set()
    for target, names, _ in imports(name):
        if target != "hlbench" and not target.startswith("hlbench."):
            continue
        submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules()]
        edges.update(submodules or [target])
    edges.discard(name)
    return {e for e in edges if e in modules()}


def test_top_level_holds_few_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_FILES, top


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_short(name: str):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"


def test_functions_are_short():
    long = []
    for name in modules():
        for node in ast.walk(tree(name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long


def test_no_import_cycle():
    graph = {name: hlbench_edges(name) for name in modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_framework_imports_only_in_backends():
    offenders = [
        f"{name}:{line} imports {target}"
        for name in modules()
        if not name.startswith("hlbench.backends.")
        for target, _, line in imports(name)
        if target.split(".")[0] in FRAMEWORKS
    ]
    assert not offenders, offenders


@pytest.mark.parametrize(
    "importer, forbidden",
    [
        ("hlbench.worker", "hlbench.sweep"),  # the child never imports the parent
        ("hlbench.sweep", "hlbench.worker"),  # nor the parent the child
        ("hlbench.backends", "hlbench.worker"),  # backends never import the loop
        ("hlbench.backends", "hlbench.sweep"),
        ("hlbench.techniques", "hlbench.backends"),  # techniques are framework-neutral
    ],
)
def test_import_direction(importer: str, forbidden: str):
    offenders = [
        f"{name} imports {edge}"
        for name in modules()
        if name == importer or name.startswith(importer + ".")
        for edge in hlbench_edges(name)
        if edge == forbidden or edge.startswith(forbidden + ".")
    ]
    assert not offenders, offenders


def test_no_private_name_imported_across_modules():
    offenders = [
        f"{name}:{line} takes {n} from {target}"
        for name in modules()
        for target, names, line in imports(name)
        if target.startswith("hlbench")
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not offenders, offenders


def test_comments_cite_no_issue_or_missing_design_section():
    pattern = re.compile(r"\bissue \d+|DESIGN §|\(issue")
    offenders = [
        f"{name}:{number}: {line.strip()}"
        for name, path in modules().items()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
