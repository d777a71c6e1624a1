"""The suites shipped inside the package (hlbench/suites/*.yaml, package data), found by name.

A clone has them at suites/ too (a link to hlbench/suites), but a `pip install` has no clone:
`hlbench run smoke` must work from any directory, so a bare name that is not a file here is looked
up among the shipped suites. The list is whatever the directory holds, so a suite added there needs
no code. `hlbench init` writes a commented starter suite (or a copy of a shipped one) to edit.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from string import Template

from hlbench.errors import UsageError

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "suites"
SUFFIXES = (".yaml", ".yml")
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(\s|$)")


def shipped() -> dict[str, Path]:
    """Shipped suite name (the file's stem) -> its file, sorted by name."""
    if not SHIPPED_DIR.is_dir():
        return {}
    files = [p for p in SHIPPED_DIR.iterdir() if p.suffix in SUFFIXES and p.is_file()]
    return {p.stem: p for p in sorted(files)}


def description(path: Path) -> str:
    """A suite's one-line description: the first sentence of the comment it opens with (every
    shipped suite has one), else its `description:` key, else ''."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    comment = []
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        comment.append(stripped.lstrip("#").strip())
    if comment:
        text = " ".join(comment)
        end = SENTENCE_END.search(text)
        return text[: end.start() + 1] if end and end.start() < 240 else comment[0]
    for line in lines:
        if line.startswith("description:"):
            return line.removeprefix("description:").strip().strip("'\"")
    return ""


def resolve(suite: str | Path) -> Path:
    """The suite file `suite` names: a path as given when it exists (or looks like a path), else
    the shipped suite of that name; a bare name that is neither is a one-line UsageError listing
    the shipped names."""
    path = Path(suite)
    text = str(suite)
    if path.exists() or "/" in text or "\\" in text:
        return path
    name = path.stem if path.suffix in SUFFIXES else text
    found = shipped()
    if name in found:
        return found[name]
    if path.suffix:  # e.g. nope.yaml: a file name, and load_suite says it cannot be read
        return path
    raise UsageError(unknown_suite_message(text, list(found)))


def unknown_suite_message(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(names) or "none"
    return (
        f"{name!r} is neither a suite file nor a shipped suite; {hint}shipped: {listed} "
        "(or write one: hlbench init)"
    )


STARTER = Template(
    """\
# $name: a starter suite written by `hlbench init`; edit it, then `hlbench run $path --dry-run`.
# Every key but `backends` and `workloads` is optional; the README's "Suite format" lists them all.
name: $name                 # records go to results/$name/<run-id>.jsonl
seed: 0                     # seeds the NumPy initial weights, the corpus and the batches
device: auto                # auto: a GPU when the backend sees one, else the CPU; cpu; cuda[:N]
backends: [torch]           # torch and/or tf; each needs its framework installed (hlbench env)
workloads:                  # one or more models; each is trained in every cell of the matrix
  - model: gpt              # gpt | lstm
    size: tiny              # gpt: tiny, small, medium, gpt2-124m, gpt2-350m; lstm: tiny ... medium
    seq_len: 32             # tokens per sequence (default: the model's context; lstm 128)
    batch_size: 8           # sequences per optimizer step; accumulation splits it in micro-batches
axes:                       # the matrix: every combination is one cell, in a fresh worker process
  precision: [fp32, bf16]   # fp32 | tf32 | bf16 | fp16 | bf16-pure | fp8 (tf32, fp8: NVIDIA GPUs)
  accumulation: [1, 2]      # gradient-accumulation steps per optimizer step
  pruning: [none]           # none | magnitude | structured | "2:4" (quote names YAML may misread)
  compile: [false]          # true: torch.compile / XLA; compilation is timed as startup
measurement:
  warmup_steps: 2           # steps timed as startup, before the measured windows
  steps: 5                  # optimizer steps per measured window
  windows: 2                # measured windows per worker
  repeats: 1                # fresh worker processes per cell; `hlbench compare` wants 5 or more
  budget_s: 60              # measured seconds per cell; past it the windows stop early (noted)
  timeout_s: 300            # a worker still running after this is killed (a `timeout` record)
optimizer:
  lr: 1e-3                  # AdamW, identical in both backends
"""
)


def init_target(given: str) -> tuple[Path, str]:
    """The file `hlbench init NAME` writes and the suite name in it: NAME.yaml in the current
    directory, or NAME itself when it ends in .yaml/.yml."""
    path = Path(given) if Path(given).suffix in SUFFIXES else Path(f"{given}.yaml")
    if not SAFE_NAME.fullmatch(path.stem) or not path.stem.strip("."):
        raise UsageError(
            f"init {given}: {path.stem!r} is not a usable suite name (letters, digits, '.', '_' "
            "or '-')"
        )
    return path, path.stem


def starter_text(path: Path, name: str, source: str | None = None) -> str:
    """The starter suite, or a copy of the shipped suite `source` renamed to `name`."""
    if source is None:
        return STARTER.substitute(name=name, path=path)
    found = shipped()
    if source not in found:
        raise UsageError(f"init --from: {unknown_suite_message(source, list(found))}")
    text = found[source].read_text(encoding="utf-8")
    # The copy keeps every comment; only its name changes, so its records go to results/<name>/
    # and never mix with the shipped suite's.
    renamed, count = re.subn(r"(?m)^name:[ \t]*[^#\n]*?([ \t]*(#.*)?)$", rf"name: {name}\1", text)
    return renamed if count else f"name: {name}\n{text}"


def write_starter(name: str, source: str | None = None) -> Path:
    """Write the starter suite (or a copy of `source`); never overwrites a file."""
    path, suite_name = init_target(name)
    text = starter_text(path, suite_name, source)
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UsageError(
            f"init: {path} exists; it is left as it is (give another NAME or remove it)"
        ) from None
    except OSError as exc:
        raise UsageError(f"init: cannot write {path}: {exc.strerror}") from None
    return path
