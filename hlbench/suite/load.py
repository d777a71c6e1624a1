"""Loading a suite: the schema, then the checks that need the workload specs (sizes, sequence length
vs context, corpus parameters, data files) and the named technique settings, then the cells.

A suite that loads is a suite whose every cell can be attempted; any problem is a one-line
UsageError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hlbench import workloads
from hlbench.axes import AUGMENTATION_METHODS, AXIS_NAMES, PRUNING_METHODS
from hlbench.cell import BytesData, Cell, DataRef, MarkovData
from hlbench.data import make_corpus
from hlbench.errors import UsageError
from hlbench.suite.custom import custom_spec
from hlbench.suite.expand import check_size, expand
from hlbench.suite.quality import check_quality
from hlbench.suite.schema import (
    Augmentation,
    BytesDataConfig,
    MarkovDataConfig,
    SuiteConfig,
    WorkloadConfig,
)
from hlbench.suite.suggest import closest, did_you_mean, known_keys, literal_choices
from hlbench.suite.yamlio import clip, file_kind, parse_yaml, quote, read_suite_bytes
from hlbench.techniques.pruning import PruningConfig
from hlbench.workloads.custom import MODELS as CUSTOM_MODELS

# Axis -> (the model its named settings validate with, the methods a bare name may be)
TECHNIQUES: dict[str, tuple[type[BaseModel], tuple[str, ...]]] = {
    "pruning": (PruningConfig, PRUNING_METHODS),
    "augmentation": (Augmentation, AUGMENTATION_METHODS),
}
UNION_TAGS = ("markov", "bytes")  # the corpus kinds pydantic puts in error locations
MAX_MESSAGE = 180  # an error line, with the CLI's "hlbench: error: ", stays within 200 characters
MAX_CHAIN = 1 << 20  # markov vocab × branching: validation builds and solves the chain
MAX_DATA_BYTES = 1 << 30  # a byte corpus is held in memory by every worker
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class Suite:
    """A validated suite: its config, where it came from, and its cells."""

    def __init__(self, config: SuiteConfig, path: Path, sha256: str, cells: list[Cell]) -> None:
        self.config = config
        self.path = path
        self.sha256 = sha256
        self.cells = cells

    @property
    def name(self) -> str:
        return self.config.name or self.path.stem


def load_suite(path: str | Path) -> Suite:
    """Load, validate and expand a suite file; any problem raises UsageError (one line)."""
    path = Path(path)
    try:
        data = read_suite_bytes(path)
        return suite_from_mapping(parse_yaml(path, data), path, hashlib.sha256(data).hexdigest())
    except UsageError as exc:
        raise UsageError(clip(str(exc), MAX_MESSAGE)) from None


def suite_from_mapping(raw: Any, path: Path, sha256: str) -> Suite:
    """Validate and expand an already-parsed suite (`path` names it in errors and anchors data
    paths)."""
    try:
        return validate(raw, path, sha256)
    except UsageError as exc:
        raise UsageError(clip(str(exc), MAX_MESSAGE)) from None
    except RecursionError:  # a parsed mapping nested past what pydantic walks
        raise UsageError(clip(f"{path}: nested too deeply", MAX_MESSAGE)) from None


def validate(raw: Any, path: Path, sha256: str) -> Suite:
    """suite_from_mapping, with messages not yet bounded."""
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of suite keys at the top level")
    try:
        config = SuiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"{path}: {first_error(exc)}") from None
    check_name(path, config)
    check_size(path, config)
    techniques = {axis: resolve_techniques(path, config, axis) for axis in TECHNIQUES}
    specs = [workload_spec(path, i, w) for i, w in enumerate(config.workloads)]
    data = [
        resolve_data(path, i, w, spec) for i, (w, spec) in enumerate(zip(config.workloads, specs))
    ]
    check_exclude(path, config)
    cells = expand(path, config, specs, data, techniques)
    check_quality(path, cells)
    return Suite(config, path, sha256, cells)


def resolve_techniques(path: Path, config: SuiteConfig, axis: str) -> dict[str, dict[str, Any]]:
    """Axis value name -> full settings, for pruning or augmentation; unknown names and bad settings
    are one-line errors naming the key."""
    model, builtins = TECHNIQUES[axis]
    defined: dict[str, dict[str, Any]] = getattr(config, axis)
    settings = {}
    for name in sorted(set(getattr(config.axes, axis)) | set(defined)):
        raw = dict(defined.get(name, {}))
        if name not in builtins and "method" not in raw:
            where = f"{axis}.{name}" if name in defined else f"axes.{axis}"
            close = closest(name, [*builtins, *defined])
            hint = f" (did you mean {close!r}?)" if close else ""
            raise UsageError(
                f"{path}: {where}: {quote(name)}{hint} is neither a method "
                f"({', '.join(builtins)}) nor defined with a `method` under `{axis}:`"
            )
        raw.setdefault("method", name)
        try:
            value = model.model_validate(raw)
        except ValidationError as exc:
            detail = first_error(exc, model)
            sep = "" if detail.startswith("<top>") else "."
            raise UsageError(f"{path}: {axis}.{name}{sep}{detail.removeprefix('<top>')}") from None
        # "none" is just that: no settings, so every un-pruned, un-augmented cell hashes alike
        method = getattr(value, "method", None)
        settings[name] = {"method": "none"} if method == "none" else value.model_dump()
    return settings


def first_error(exc: ValidationError, model: type[BaseModel] = SuiteConfig) -> str:
    """pydantic's first error as `key.path: message`, plus how many more there are; an unknown key
    or value names the closest known one (`model` is what was validated)."""
    # An unknown key first: a misspelt required key is also reported missing, and the typo is the
    # news (with its "did you mean").
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    # Drop pydantic's union-branch labels (e.g. 'markov', 'list[...]') so the path reads as the
    # YAML does.
    loc = ".".join(
        clip(str(p), 30)
        for p in err["loc"]
        if not (isinstance(p, str) and ("[" in p or p in UNION_TAGS))
    )
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key" + did_you_mean(err["loc"][-1], known_keys(model, err["loc"]))
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "string_pattern_mismatch":
        msg = f"expected letters, digits, '.', '_' or '-' (got {quote(err['input'])})"
    elif err["type"] == "literal_error" and (close := closest(err["input"], literal_choices(err))):
        # the suggestion first: the list of choices may be cut to fit the line
        msg = f"{quote(err['input'])}: did you mean {close!r}? ({clip(msg, 90)})"
    elif err["type"] != "value_error":
        msg = f"{clip(msg, 100)} (got {quote(err['input'])})"
    msg = clip(msg, 120)
    more = f" (+{len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{loc or '<top>'}: {msg}{more}"


def workload_spec(path: Path, index: int, w: WorkloadConfig) -> workloads.ModelSpec:
    """The workload's model spec, checked against its sequence length and corpus."""
    key = f"{path}: workloads.{index}"
    try:
        if w.model in CUSTOM_MODELS:  # the user's model, built in the worker
            spec = custom_spec(path, index, w)
        else:
            spec = workloads.get_spec(w.model, str(w.size), w.vocab_size)
    except ValueError as exc:
        raise UsageError(f"{key}.size: {clip(str(exc), 120)}") from None
    seq_len = w.seq_len_for(spec)
    if spec.context is not None and seq_len > spec.context:
        raise UsageError(
            f"{key}.seq_len: {seq_len} exceeds the context of {w.model}-{w.size} ({spec.context})"
        )
    if isinstance(w.data, MarkovDataConfig) and w.data.vocab and w.data.vocab > spec.vocab_size:
        raise UsageError(
            f"{key}.data.vocab: {w.data.vocab} symbols exceed the model's vocabulary "
            f"({spec.vocab_size})"
        )
    if isinstance(w.data, MarkovDataConfig):
        states = (w.data.vocab or spec.vocab_size) * w.data.branching
        if states > MAX_CHAIN:
            raise UsageError(
                f"{key}.data: a chain of vocab × branching = {states} transitions; the limit is "
                f"{MAX_CHAIN}"
            )
    if isinstance(w.data, BytesDataConfig) and spec.vocab_size < 256:
        raise UsageError(f"{key}.vocab_size: a byte corpus needs a vocabulary of at least 256")
    return spec


def resolve_data(path: Path, index: int, w: WorkloadConfig, spec: workloads.ModelSpec) -> DataRef:
    """The workload's corpus as its cells record it: defaults filled in, a byte file's path made
    absolute and its content hashed (the content affects the numbers, so it is in the cell hash)."""
    key = f"{path}: workloads.{index}.data"
    data: DataRef
    if isinstance(w.data, BytesDataConfig):
        file = (path.parent / w.data.path).resolve()
        digest = hash_data_file(f"{key}.path", file, w.data.path)
        data = BytesData(path=str(file), sha256=digest)
    else:
        data = MarkovData(vocab=w.data.vocab or spec.vocab_size, branching=w.data.branching)
    try:  # the corpus checks its own parameters (and a byte file's size against seq_len)
        make_corpus(data.corpus_config(), seed=0).check_seq_len(w.seq_len_for(spec))
    except ValueError as exc:
        raise UsageError(f"{key}: {clip(str(exc), 120)}") from None
    return data


def hash_data_file(key: str, file: Path, written: str) -> str:
    """The sha256 of a byte corpus, read in chunks; a file that is missing, not a regular file or
    larger than MAX_DATA_BYTES is a UsageError saying which (naming the file as `written`)."""
    shown = written if len(written) <= 40 else "..." + written[-37:]
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{key}: {shown} is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_DATA_BYTES:
            raise UsageError(f"{key}: {shown} is over 1 GiB ({info.st_size} bytes)")
        digest = hashlib.sha256()
        with file.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise UsageError(f"{key}: no such file: {shown}") from None
    except OSError as exc:
        raise UsageError(f"{key}: cannot read {shown}: {exc.strerror}") from None
    return digest.hexdigest()


def check_name(path: Path, config: SuiteConfig) -> None:
    """The suite's name is a directory under results/: one safe path component."""
    if config.name is not None:
        return  # the schema checked it
    if not SAFE_NAME.fullmatch(path.stem) or not path.stem.strip("."):
        raise UsageError(
            f"{path}: the file name {quote(path.stem)} is not a usable suite name; set `name:` "
            "(letters, digits, -_.)"
        )


def check_exclude(path: Path, config: SuiteConfig) -> None:
    """An exclusion naming a value that is not in the matrix is a typo that would silently do
    nothing."""
    declared: dict[str, set[Any]] = {
        "workload": {w.display_name for w in config.workloads},
        "backend": set(config.backends),
        **{axis: set(getattr(config.axes, axis)) for axis in AXIS_NAMES},
    }
    for i, rule in enumerate(config.exclude):
        if not rule:
            raise UsageError(f"{path}: exclude.{i}: an empty rule would exclude every cell")
        for key, value in rule.items():
            for v in value if isinstance(value, list) else [value]:
                if v not in declared[key]:
                    choices = clip(", ".join(sorted(map(str, declared[key]))), 80)
                    hint = did_you_mean(v, declared[key]).removeprefix("; ")
                    raise UsageError(
                        f"{path}: exclude.{i}.{key}: {quote(v)} is not in the suite; "
                        f"{hint + ' ' if hint else ''}choose from: {choices}"
                    )
