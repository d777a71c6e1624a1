"""Corpora and batches, with nothing downloaded.

Two corpora: a seeded sparse Markov chain, whose exact entropy rate gives a loss floor to measure
convergence against, and a local byte file. `make_batches` turns either into fixed, seeded lists of
(inputs, targets) batches, so every backend trains on the same tokens; `sample_windows` is its first
half, the raw windows, for augmentation to edit (hlbench.techniques.augment).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
import os
from typing import Any

import numpy as np

IGNORE_INDEX = -100  # target at padded positions: PyTorch cross-entropy's default ignore_index
SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is elementwise, not a bool
class Batch:
    inputs: np.ndarray  # (B, T) int64 token ids; padded positions hold 0
    targets: np.ndarray  # (B, T) int64 next-token ids; IGNORE_INDEX where padded

    def __post_init__(self) -> None:
        if self.inputs.ndim != 2 or self.inputs.shape != self.targets.shape:
            raise ValueError(
                f"Batch needs inputs and targets of the same (B, T) shape, got "
                f"{self.inputs.shape} and {self.targets.shape}"
            )

    @property
    def n_target_tokens(self) -> int:
        """Targets that count towards the loss (not IGNORE_INDEX)."""
        return int(np.count_nonzero(self.targets != IGNORE_INDEX))

    def split(self, k: int) -> list[Batch]:
        """k equal micro-batches along the batch axis (views, not copies)."""
        if not isinstance(k, int) or k < 1 or len(self) % k:
            raise ValueError(
                f"cannot split a batch of {len(self)} rows into {k!r} equal "
                f"micro-batches; the batch size must be a multiple of it"
            )
        return [Batch(i, t) for i, t in zip(np.split(self.inputs, k), np.split(self.targets, k))]

    def shard(self, rank: int, world_size: int) -> Batch:
        """Data parallel: rank's rows of the global batch, [rank·B/W, (rank+1)·B/W) (a view).

        Each rank then splits its shard into its k micro-batches; the step's loss stays the sum over
        every row's target tokens divided by the global batch's count (n_target_tokens of the whole
        batch)."""
        return self.split(world_size)[rank]

    def __len__(self) -> int:
        return self.inputs.shape[0]


class Corpus(abc.ABC):
    """A token source; tokens are int64 in [0, vocab_size)."""

    vocab_size: int
    entropy_floor_nats: float | None  # exact entropy rate (nats/token); None when unknown
    entropy_floor_reason: str | None  # why the floor is None

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able kind and parameters: enough to identify the corpus in a record."""

    @abc.abstractmethod
    def sample(
        self, rng: np.random.Generator, batch_size: int, seq_len: int, split: str
    ) -> np.ndarray:
        """(batch_size, seq_len + 1) int64 token windows from `split` ("train" or "eval")."""

    def check_seq_len(self, seq_len: int) -> None:
        """Raise ValueError when windows of `seq_len` + 1 tokens cannot be drawn; default: any."""
        return None


def _floyd_subsets(rng: np.random.Generator, n_rows: int, n: int, k: int) -> np.ndarray:
    """(n_rows, k) int64: for each row, k distinct values from range(n), uniformly.

    Floyd's algorithm vectorised over rows: a loop over k only, so V = 50304 rows cost nothing.
    """
    picks = np.empty((n_rows, k), dtype=np.int64)
    for m, j in enumerate(range(n - k, n)):
        t = rng.integers(0, j + 1, size=n_rows)
        taken = (picks[:, :m] == t[:, None]).any(axis=1)
        picks[:, m] = np.where(taken, j, t)
    return picks


def stationary_dense(successors: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Exact pi with pi P = pi, sum(pi) = 1, by a linear solve on the dense V x V matrix."""
    V = successors.shape[0]
    P = np.zeros((V, V))
    P[np.arange(V)[:, None], successors] = probs
    A = P.T - np.eye(V)
    A[-1, :] = 1.0  # the equations are rank V-1; replace one with the normalisation
    rhs = np.zeros(V)
    rhs[-1] = 1.0
    pi = np.clip(np.linalg.solve(A, rhs), 0.0, None)
    return pi / pi.sum()


def stationary_power(
    successors: np.ndarray, probs: np.ndarray, tol: float = 1e-14, max_iter: int = 100_000
) -> np.ndarray:
    """pi by power iteration on the sparse chain, to float64 precision.

    Iterates the lazy chain (I + P) / 2, which has the same pi but all other eigenvalues inside the
    disc |z - 1/2| <= 1/2, so no eigenvalue near -1 or on the unit circle slows convergence.
    """
    V = successors.shape[0]
    flat_succ = successors.ravel()
    pi = np.full(V, 1.0 / V)
    for _ in range(max_iter):
        moved = np.bincount(flat_succ, weights=(pi[:, None] * probs).ravel(), minlength=V)
        new = 0.5 * (pi + moved)
        new /= new.sum()
        if np.abs(new - pi).sum() < tol:
            return new
        pi = new
    raise RuntimeError(
        f"stationary distribution of the {V}-state Markov chain did not converge in "
        f"{max_iter} iterations; use a larger branching"
    )


DENSE_MAX_VOCAB = 1024  # the dense solve is O(V^3); above this, power iteration is faster


class MarkovCorpus(Corpus):
    """A seeded sparse first-order Markov chain over `vocab` symbols.

    Each state s has `branching` distinct successors with transition probabilities from a
    Dirichlet(1) draw. Irreducible and aperiodic by construction, so the stationary distribution pi
    is unique and the entropy rate is well defined: every state's successors include (s + 1) mod V
    (a ring through every state: irreducible), and state 0 has a self-loop (a cycle of length 1 in
    an irreducible chain: aperiodic).

    Public read-only arrays: `successors` (V, branching) int64, `probs` (V, branching) float64
    (row-stochastic), `stationary` (V,) float64.
    """

    def __init__(self, vocab: int, branching: int, seed: int) -> None:
        if vocab < 2:
            raise ValueError(f"markov corpus: vocab must be at least 2, got {vocab}")
        if not 2 <= branching <= vocab:
            # branching 1 would be the bare ring: periodic, and zero entropy.
            raise ValueError(
                f"markov corpus: branching must be between 2 and vocab ({vocab}), got {branching}"
            )
        self.vocab_size = vocab
        self.branching = branching
        self.seed = seed
        rng = np.random.default_rng([seed, 0x4D61726B])  # tagged: distinct from batch streams

        # Successor offsets other than +1, drawn from {0, 2, 3, ..., V-1}: candidate c maps to
        # offset 0 (self-loop) if c == 0 else c + 1.
        states = np.arange(vocab, dtype=np.int64)
        cand = _floyd_subsets(rng, vocab, vocab - 1, branching - 1)
        if not (cand[0] == 0).any():
            cand[0, 0] = 0  # state 0's self-loop, for aperiodicity
        offsets = np.where(cand == 0, 0, cand + 1)
        succ = np.concatenate(
            [(states[:, None] + 1) % vocab, (states[:, None] + offsets) % vocab], axis=1
        )
        succ.sort(axis=1)
        weights = rng.standard_exponential((vocab, branching))  # normalised: Dirichlet(1)
        weights = np.maximum(weights, np.finfo(np.float64).tiny)  # every listed successor possible
        probs = weights / weights.sum(axis=1, keepdims=True)

        if vocab <= DENSE_MAX_VOCAB:
            pi = stationary_dense(succ, probs)
        else:
            pi = stationary_power(succ, probs)
        row_entropy = -(probs * np.log(probs)).sum(axis=1)

        self.successors = succ
        self.probs = probs
        self.stationary = pi
        self.entropy_floor_nats: float | None = float(pi @ row_entropy)
        self.entropy_floor_reason: str | None = None
        # Cumulative tables for inverse-CDF sampling; the last entry is exactly 1 so a uniform
        # draw in [0, 1) always lands on a listed entry.
        self._cum_probs = np.cumsum(probs, axis=1)
        self._cum_probs[:, -1] = 1.0
        self._cum_pi = np.cumsum(pi)
        self._cum_pi[-1] = 1.0
        for arr in (self.successors, self.probs, self.stationary, self._cum_probs, self._cum_pi):
            arr.flags.writeable = False

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "markov",
            "vocab": self.vocab_size,
            "branching": self.branching,
            "seed": self.seed,
            "entropy_floor_nats": self.entropy_floor_nats,
        }

    def sample(
        self, rng: np.random.Generator, batch_size: int, seq_len: int, split: str
    ) -> np.ndarray:
        # The chain has no held-out text: train and eval differ only through make_batches' streams.
        _check_split(split)
        u = rng.random((batch_size, seq_len + 1))
        out = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        # The first token is drawn from pi, so every position is stationary and the entropy floor
        # applies to every target position, the first included.
        state = np.searchsorted(self._cum_pi, u[:, 0], side="right")
        state = np.minimum(state, self.vocab_size - 1)
        out[:, 0] = state
        last = self.branching - 1
        for t in range(1, seq_len + 1):
            idx = (self._cum_probs[state] <= u[:, t, None]).sum(axis=1)
            state = self.successors[state, np.minimum(idx, last)]
            out[:, t] = state
        return out


EVAL_FRACTION = 0.1


class ByteCorpus(Corpus):
    """The bytes of a local file, vocab 256. The last 10% of the file (rounded up) is the eval
    split and the rest train; the boundary is fixed per file, so eval bytes are never trained on
    whatever the sequence length."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ValueError(f"byte corpus: file not found: {self.path}")
        with open(self.path, "rb") as f:
            raw = f.read()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self._data = np.frombuffer(raw, dtype=np.uint8)
        self.n_bytes = len(raw)
        self.eval_start = self.n_bytes - math.ceil(self.n_bytes * EVAL_FRACTION)
        self.vocab_size = 256
        self.entropy_floor_nats = None
        self.entropy_floor_reason = "unknown for a byte corpus"
        self.check_seq_len(1)

    @staticmethod
    def min_bytes(seq_len: int) -> int:
        """Smallest file with a (seq_len + 1)-byte window in both splits: the eval tenth
        ceil(n/10) >= seq_len + 1 needs n >= 10*seq_len + 1 (the train part is then larger)."""
        return 10 * seq_len + 1

    def check_seq_len(self, seq_len: int) -> None:
        need = seq_len + 1
        if self.eval_start < need or self.n_bytes - self.eval_start < need:
            raise ValueError(
                f"byte corpus {self.path} has {self.n_bytes} bytes; windows of "
                f"seq_len {seq_len} need at least {self.min_bytes(seq_len)} bytes "
                f"(the last 10% is the eval split and must hold seq_len + 1 bytes)"
            )

    def describe(self) -> dict[str, Any]:
        return {"kind": "bytes", "path": self.path, "sha256": self.sha256, "n_bytes": self.n_bytes}

    def sample(
        self, rng: np.random.Generator, batch_size: int, seq_len: int, split: str
    ) -> np.ndarray:
        _check_split(split)
        self.check_seq_len(seq_len)
        lo, hi = (0, self.eval_start) if split == "train" else (self.eval_start, self.n_bytes)
        starts = rng.integers(lo, hi - seq_len, size=batch_size)  # last start: hi - (seq_len + 1)
        return self._data[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; choose from: {', '.join(SPLITS)}")


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


CORPUS_KEYS = {"markov": {"kind", "vocab", "branching"}, "bytes": {"kind", "path"}}


def make_corpus(cfg: dict[str, Any], seed: int) -> Corpus:
    """Build a corpus from its config: {"kind": "markov", "vocab": int, "branching": int} or
    {"kind": "bytes", "path": str}. `seed` fixes the Markov chain (a byte corpus ignores it)."""
    if not isinstance(cfg, dict):
        raise ValueError(f"corpus config must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("kind")
    if kind not in CORPUS_KEYS:
        raise ValueError(f"unknown corpus kind {kind!r}; choose from: {', '.join(CORPUS_KEYS)}")
    allowed = CORPUS_KEYS[kind]
    unknown = sorted(set(cfg) - allowed)
    missing = sorted(allowed - set(cfg))
    if unknown or missing:
        parts = ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing key(s) {', '.join(missing)}"] if missing else []
        )
        raise ValueError(
            f"{kind} corpus config: {'; '.join(parts)}; expected keys: {', '.join(sorted(allowed))}"
        )
    if kind == "markov":
        vocab = _positive_int(cfg["vocab"], "markov corpus: vocab", 2)
        branching = _positive_int(cfg["branching"], "markov corpus: branching", 2)
        if branching > vocab:
            raise ValueError(f"markov corpus: branching {branching} exceeds vocab {vocab}")
        return MarkovCorpus(vocab, branching, seed)
    path = cfg["path"]
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"bytes corpus: path must be a string, got {path!r}")
    return ByteCorpus(path)


@dataclasses.dataclass(frozen=True, eq=False)
class TokenWindows:
    """One step's draw from a corpus, before it becomes a Batch: augmentation that edits the token
    stream itself (span deletion) works here, on windows drawn longer for it."""

    tokens: np.ndarray  # (B, L) int64 stream windows; a Batch of L - 1 positions once L = T + 1
    lengths: np.ndarray | None  # (B,) kept length of each row with variable_length, else None

    def to_batch(self) -> Batch:
        """(inputs, targets) = (tokens[:, :-1], tokens[:, 1:]), positions >= a row's length padded
        (input 0, target IGNORE_INDEX)."""
        # copies, never views: with one row the slices are contiguous already, and padding one
        # view would write into the other through the shared windows
        inputs = self.tokens[:, :-1].copy()
        targets = self.tokens[:, 1:].copy()
        if self.lengths is not None:
            pad = np.arange(inputs.shape[1])[None, :] >= self.lengths[:, None]
            inputs[pad] = 0
            targets[pad] = IGNORE_INDEX
        return Batch(inputs, targets)


def sample_windows(
    corpus: Corpus,
    seed: int,
    n_batches: int,
    batch_size: int,
    seq_len: int,
    split: str = "train",
    variable_length: bool = False,
    extra_tokens: int = 0,
) -> list[TokenWindows]:
    """`n_batches` draws of `batch_size` windows of seq_len + 1 + `extra_tokens` stream tokens.

    Deterministic in (corpus, seed, split, sizes). Train and eval use separate generators (second
    seed word 0 or 1), so the eval stream never overlaps the train stream. With `variable_length`,
    row r keeps a length l_r ~ Uniform{max(1, T//4) .. T} from the same generator, drawn after the
    row's tokens. `extra_tokens`: stream tokens an augmentation deletes and refills from
    (AugmentationConfig.extra_tokens); the lengths stay within seq_len whatever it is.
    """
    _check_split(split)
    _positive_int(n_batches, "n_batches")
    _positive_int(batch_size, "batch_size")
    _positive_int(seq_len, "seq_len")
    corpus.check_seq_len(seq_len)
    if extra_tokens:
        corpus.check_seq_len(seq_len + extra_tokens)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    draws = []
    for _ in range(n_batches):
        tokens = corpus.sample(rng, batch_size, seq_len + extra_tokens, split)
        lengths = None
        if variable_length:
            lengths = rng.integers(max(1, seq_len // 4), seq_len + 1, size=batch_size)
        draws.append(TokenWindows(tokens, lengths))
    return draws


def make_batches(
    corpus: Corpus,
    seed: int,
    n_batches: int,
    batch_size: int,
    seq_len: int,
    split: str = "train",
    variable_length: bool = False,
) -> list[Batch]:
    """`n_batches` batches of (inputs, targets) = (window[:, :-1], window[:, 1:]), from
    sample_windows (which says how they are drawn); augmentation is a separate step on the
    windows (hlbench.techniques.augment)."""
    windows = sample_windows(corpus, seed, n_batches, batch_size, seq_len, split, variable_length)
    return [draw.to_batch() for draw in windows]
