"""Suite checks of `model: custom` and `model: hf` workloads, before anything runs.

What can be checked without importing the user's code (which imports a framework): the reference's
syntax; for a file factory, that the file exists, parses and defines the name at its top level
(its content hash goes into the cell); for a module factory, that its top-level package is
importable the way a worker imports it (`python -P`: not from the current directory); for hf, that
transformers is installed. Importing and calling the factory happens in the worker, where a failure
is the cell's `error` record with the reason.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from hlbench.errors import UsageError
from hlbench.suite.schema import WorkloadConfig
from hlbench.suite.yamlio import clip, quote
from hlbench.workloads.custom import CustomSpec, split_ref

HF_EXTRA = 'pip install "hlbench[hf]"'
MAX_FACTORY_BYTES = 1 << 22  # a factory file is source code, not data


def custom_spec(path: Path, index: int, w: WorkloadConfig) -> CustomSpec:
    """The unbuilt spec of a custom or hf workload; UsageError (one line) for what is wrong."""
    key = f"{path}: workloads.{index}"
    for what, value in (("kwargs", w.kwargs), ("config", w.config)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise UsageError(
                f"{key}.{what}: only YAML strings, numbers, booleans, lists and "
                "mappings (no dates or other objects)"
            ) from None
    if w.model == "hf":
        return hf_spec(key, w)
    factories = w.factory if isinstance(w.factory, dict) else {"torch": w.factory}
    resolved, hashes = {}, {}
    for framework, ref in factories.items():
        where = f"{key}.factory" + (f".{framework}" if isinstance(w.factory, dict) else "")
        resolved[framework], digest = check_factory(where, path.parent, ref)
        if digest is not None:
            hashes[framework] = digest
    return CustomSpec(
        model="custom",
        size="custom",
        vocab_size=w.vocab_size,
        factory=resolved,
        kwargs=dict(w.kwargs or {}),
        factory_sha256=hashes or None,
    )


def hf_spec(key: str, w: WorkloadConfig) -> CustomSpec:
    """An hf workload: transformers installed, the vocabulary from `vocab_size` or the config."""
    if importlib.util.find_spec("transformers") is None:
        raise UsageError(f"{key}.model: hf needs transformers ({HF_EXTRA}), not installed here")
    config = dict(w.config or {})
    vocab = config.get("vocab_size")
    if w.vocab_size is not None and vocab is not None and vocab != w.vocab_size:
        raise UsageError(
            f"{key}.config.vocab_size: {vocab} differs from the workload's vocab_size "
            f"{w.vocab_size}; give one"
        )
    vocab = w.vocab_size or vocab
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        raise UsageError(f"{key}.vocab_size: model hf needs a vocabulary (vocab_size)")
    config["vocab_size"] = vocab
    return CustomSpec(
        model="hf",
        size=str(w.architecture),
        vocab_size=vocab,
        architecture=w.architecture,
        config=config,
    )


def check_factory(key: str, base: Path, ref: str) -> tuple[str, str | None]:
    """The reference as cells hold it (a file made absolute) and a file's sha256."""
    try:
        target, names, is_file = split_ref(ref)
    except ValueError as exc:
        raise UsageError(f"{key}: {clip(str(exc), 120)}") from None
    attr = ".".join(names)
    if not is_file:
        check_module(key, target)
        return ref, None
    file = (base / target).resolve()
    try:
        source = file.read_bytes() if file.is_file() else None
    except OSError as exc:
        raise UsageError(f"{key}: cannot read {quote(target)}: {exc.strerror}") from None
    if source is None:
        raise UsageError(f"{key}: no such file: {quote(target)} (relative to the suite file)")
    if len(source) > MAX_FACTORY_BYTES:
        raise UsageError(f"{key}: {quote(target)} is over 4 MiB; a factory file is source code")
    try:
        tree = ast.parse(source, filename=str(file))
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise UsageError(f"{key}: {quote(target)} does not parse (line {line})") from None
    if names[0] not in top_level_names(tree):
        raise UsageError(f"{key}: {quote(target)} defines no {quote(names[0])} at its top level")
    return f"{file}:{attr}", hashlib.sha256(source).hexdigest()


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level: functions, classes, assignments, imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def check_module(key: str, module: str) -> None:
    """The module's top-level package is importable from a worker's path: sys.path without the
    current directory (workers start with `python -P`). Its submodules are imported only there."""
    top = module.split(".")[0]
    if top in sys.builtin_module_names:
        return
    # sys.path[0] is the current directory under `python -m hlbench` (PYTHONPATH entries follow)
    first_is_cwd = bool(sys.path) and sys.path[0] in ("", ".", os.getcwd())
    worker_path = sys.path[1:] if first_is_cwd else list(sys.path)
    try:
        found: Any = importlib.machinery.PathFinder.find_spec(top, worker_path)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UsageError(
            f"{key}: no module {quote(top)} on the workers' path (they do not import from the "
            "current directory); install it, set PYTHONPATH, or name a file: 'models.py:NAME'"
        )
