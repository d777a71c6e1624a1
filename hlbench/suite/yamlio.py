"""Safe YAML loading with the strictness a benchmark config needs.

PyYAML's SafeLoader never constructs Python objects, but it silently keeps the last of two
duplicate keys, reads `3e-4` as a string (YAML 1.1 wants a dot in floats) and `2:4` as the integer
124 (YAML 1.1's base-60 ints). Each would turn a typo or a pruning method into a wrong benchmark, so
this loader rejects duplicates and reads YAML 1.2 numbers.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import yaml

from hlbench.errors import UsageError

MAX_FILE_BYTES = 4 << 20  # a suite is a few KB; anything this big is not a suite
MAX_DEPTH = 32  # nesting of mappings and sequences, aliases expanded
MAX_NODES = 100_000  # nodes of the document with every alias expanded (an alias bomb: billions)
QUOTE_CHARS = 40  # how much of a bad value an error line quotes


def clip(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)`, cut to a short prefix: a bad value of megabytes never lands in a message."""
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # never repr a huge string whole
    if isinstance(value, int) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"  # repr refuses past 4300 digits
    return clip(repr(value), limit)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate and non-scalar keys, bounds nesting, and accepts
    `1e-3`-style floats."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # the composer recurses per level; a file of 100k '[' would overflow the stack
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            mark = key_node.start_mark
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value, not a list or mapping", mark
                )
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {quote(key)}", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 integers only: without the base-60 form, `2:4` stays the string "2:4".
# YAML 1.2 booleans only: true and false. YAML 1.1 also reads yes, no, on and off as booleans, so
# `pruning: [off]` would silently be [False]; such a plain word is refused with the fix instead.
REPLACED_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:bool")
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
YAML11_BOOL_TAG = "tag:hlbench,2026:yaml11-bool"
YAML11_TRUE = ("yes", "on")
StrictLoader.add_implicit_resolver(
    YAML11_BOOL_TAG,
    re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$"),
    list("yYnNoO"),
)


def refuse_yaml11_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> None:
    word = node.value
    meaning = "true" if word.lower() in YAML11_TRUE else "false"
    raise yaml.constructor.ConstructorError(
        None,
        None,
        f'{word} is {meaning} in YAML 1.1; write "{word}" (quoted) for the word, or {meaning}',
        node.start_mark,
    )


StrictLoader.add_constructor(YAML11_BOOL_TAG, refuse_yaml11_bool)
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


def read_suite_bytes(path: Path) -> bytes:
    """The suite file's bytes: a regular file of at most MAX_FILE_BYTES, else a UsageError (a FIFO
    or /dev/zero is never opened, so never blocks or fills memory)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path}: not a regular file ({file_kind(info.st_mode)})")
        if info.st_size > MAX_FILE_BYTES:
            raise UsageError(f"{path}: {info.st_size} bytes; a suite file is at most 4 MiB")
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read suite file: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: larger than 4 MiB; a suite file is at most that")
    return data


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((what for test, what in kinds if test(mode)), "not a plain file")


def decode(path: Path, data: bytes) -> str:
    """UTF-8 text, or a one-line UsageError saying what the bytes are instead."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UsageError(f"{path}: the file is UTF-16; save it as UTF-8")
    if b"\x00" in data:
        at = data.index(b"\x00")
        raise UsageError(f"{path}: a NUL byte at byte {at}; a suite is UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start} is invalid)") from None


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely; any problem becomes a one-line UsageError naming the file."""
    return parse_yaml(path, read_suite_bytes(path))


def parse_yaml(path: Path, data: bytes) -> Any:
    """Parse a suite's bytes safely and within bounds; `path` names the file in errors."""
    text = decode(path, data)
    try:
        loader = StrictLoader(text)
    except yaml.YAMLError as exc:  # the reader checks for unprintable characters up front
        raise UsageError(f"{path}: {_one_line(exc)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: {_one_line(exc)}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply") from None
    except ValueError as exc:  # Python's int() refuses more than 4300 digits
        raise UsageError(f"{path}: a value PyYAML cannot read: {clip(str(exc), 60)}") from None
    finally:
        loader.dispose()


def check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases, expanded, would exceed MAX_NODES nodes or MAX_DEPTH levels,
    or refer to themselves, computed on the node graph without building the expansion."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    active: set[int] = set()

    def measure(node: yaml.Node, level: int) -> tuple[int, int]:
        if id(node) in sizes:
            size, depth = sizes[id(node)]
        elif id(node) in active:
            raise yaml.composer.ComposerError(
                None, None, "an alias refers to the node that contains it", node.start_mark
            )
        elif level > MAX_DEPTH:
            size, depth = 1, 1  # refused below
        else:
            active.add(id(node))
            size, depth = 1, 1
            children: list[Any] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            for child in children:
                n, d = measure(child, level + 1)
                size, depth = size + n, max(depth, d + 1)
                if size > MAX_NODES:
                    break
            active.discard(id(node))
            sizes[id(node)] = (size, depth)
        if size > MAX_NODES or level + depth - 1 > MAX_DEPTH:
            what = f"more than {MAX_NODES} values" if size > MAX_NODES else "too deep a nesting"
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to {what}", node.start_mark
            )
        return size, depth

    measure(root, 1)


def _one_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if "could not determine a constructor for the tag" in problem:
        tag = problem.removeprefix("could not determine a constructor for the tag").strip()
        problem = (
            f"the tag {clip(tag, QUOTE_CHARS)} is not allowed (YAML tags that construct objects "
            "are not)"
        )
    return where + clip(problem, 120)
