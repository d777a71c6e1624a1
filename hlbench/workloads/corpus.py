"""The corpus a cell names, resolved (a Markov chain, or a text file's bytes with its content hash),
and `from_mapping`, which builds these and the cell's other frozen configs from their dicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    """`cls(**data)` with a one-line error naming unknown and missing keys."""
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    names = {f.name for f in fields}
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    unknown, missing = sorted(set(data) - names), sorted(required - set(data))
    if unknown or missing:
        problems = [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
        problems += [f"missing key(s) {', '.join(missing)}"] if missing else []
        raise ValueError(f"{cls.__name__}: {'; '.join(problems)}")
    return cls(**data)


@dataclass(frozen=True)
class MarkovData:
    """A synthetic Markov-chain corpus (hlbench.data.MarkovCorpus), resolved: `vocab` is set."""

    vocab: int
    branching: int
    kind: ClassVar[str] = "markov"

    def corpus_config(self) -> dict[str, Any]:
        """The config hlbench.data.make_corpus takes."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab, "branching": self.branching}


@dataclass(frozen=True)
class BytesData:
    """A local text file read as bytes (hlbench.data.ByteCorpus): its absolute path and, since its
    content affects the numbers, the sha256 of that content."""

    path: str
    sha256: str
    kind: ClassVar[str] = "bytes"

    def corpus_config(self) -> dict[str, Any]:
        """The config hlbench.data.make_corpus takes (the content hash is not part of it)."""
        return {"kind": self.kind, "path": self.path}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256}


DataRef = MarkovData | BytesData


def data_from_dict(data: Mapping[str, Any]) -> DataRef:
    """A corpus config from its dict, by its `kind`."""
    kinds: dict[str, type[MarkovData] | type[BytesData]] = {
        "markov": MarkovData,
        "bytes": BytesData,
    }
    kind = data.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown corpus kind {kind!r}; choose from: {', '.join(kinds)}")
    return from_mapping(kinds[kind], {k: v for k, v in data.items() if k != "kind"})
