"""Safe YAML loading with the strictness a benchmark config needs.

PyYAML's SafeLoader never constructs Python objects, but it silently keeps the last of two
duplicate keys, reads `3e-4` as a string (YAML 1.1 wants a dot in floats) and `2:4` as the integer
124 (YAML 1.1's base-60 ints). Each would turn a typo or a pruning method into a wrong benchmark, so
this loader rejects duplicates and reads YAML 1.2 numbers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hlbench.errors import UsageError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and accepts `1e-3`-style floats."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 integers only: without the base-60 form, `2:4` stays the string "2:4".
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$"),
    list("-+0123456789"),
)

# YAML 1.2 float syntax, so that `lr: 3e-4` is a number, not a string.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely; any problem becomes a one-line UsageError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read suite file: {exc.strerror}") from None
    loader = StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: {_one_line(exc)}") from None
    finally:
        loader.dispose()


def _one_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if "could not determine a constructor for the tag" in problem:
        problem = f"{problem} (YAML tags that construct objects are not allowed)"
    return where + " ".join(problem.split())
