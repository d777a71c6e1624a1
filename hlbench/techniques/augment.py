"""Data augmentation on the host, on NumPy batches: deterministic from the seed, so every backend
trains on exactly the same augmented tokens.

- token_replace (rate p): each input position (padding excluded) is replaced, with probability p,
  by a token drawn uniformly from the vocabulary;
- token_mask (rate p): each input position is replaced, with probability p, by `mask_token`
  (default: the last id of the vocabulary);
- span_delete (rate p): spans of mean length `span_mean` (geometric) are deleted from each row's
  token stream until about a fraction p of it is gone, and the row is refilled from the same stream
  (its windows are drawn longer for that), so inputs and targets stay aligned.
Targets are never corrupted by token_replace / token_mask: the model learns to predict the true next
token from a noisy context. Eval batches are never augmented.

A step of its own after sampling (hlbench.data.sample_windows, which draws span_delete's longer
windows) and before training: `augment_batches` returns the batches and the host time it took.
Augmentation draws from its own generator (third seed word 2), so token_replace / token_mask leave
the underlying token stream exactly as without augmentation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from hlbench.data import IGNORE_INDEX, SPLITS, Batch, TokenWindows

AUGMENT_STREAM = 2  # third seed word of augmentation's generator: apart from the token stream
METHODS = ("none", "token_replace", "token_mask", "span_delete")


@dataclass(frozen=True)
class AugmentationConfig:
    method: str = "none"
    rate: float = 0.1
    mask_token: int | None = None  # token_mask: default vocab_size - 1
    span_mean: float = 3.0  # span_delete: mean span length in tokens

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentationConfig:
        return cls(**data)

    def extra_tokens(self, seq_len: int) -> int:
        """How many more stream tokens a window needs so that deletions can be refilled."""
        if self.method != "span_delete":
            return 0
        return int(np.ceil(seq_len * min(1.0, 3 * self.rate))) + int(4 * self.span_mean)


def corrupt_inputs(
    inputs: np.ndarray,
    valid: np.ndarray,
    config: AugmentationConfig,
    vocab_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """token_replace / token_mask on a (B, T) input array; `valid` marks non-padding positions."""
    hit = (rng.random(inputs.shape) < config.rate) & valid
    out = inputs.copy()
    if config.method == "token_replace":
        out[hit] = rng.integers(0, vocab_size, size=int(hit.sum()))
    elif config.method == "token_mask":
        out[hit] = vocab_size - 1 if config.mask_token is None else config.mask_token
    return out


def delete_spans(
    windows: np.ndarray, keep_len: int, config: AugmentationConfig, rng: np.random.Generator
) -> np.ndarray:
    """(B, L) stream windows → (B, keep_len): spans deleted, the rest of the stream moved up."""
    out = np.empty((windows.shape[0], keep_len), dtype=windows.dtype)
    p_start = config.rate / config.span_mean  # expected deleted fraction ≈ rate
    for r, row in enumerate(windows):
        keep = np.ones(row.size, dtype=bool)
        starts = np.flatnonzero(rng.random(row.size) < p_start)
        lengths = rng.geometric(1.0 / config.span_mean, size=starts.size)
        for s, n in zip(starts, lengths):
            keep[s : s + n] = False
        kept = row[keep]
        if kept.size < keep_len:  # an unlucky row: refill by keeping the tail of what was deleted
            kept = np.concatenate([kept, row[~keep]])
        out[r] = kept[:keep_len]
    return out


def augment_batches(
    windows: list[TokenWindows],
    config: AugmentationConfig,
    seed: int,
    seq_len: int,
    vocab_size: int,
) -> tuple[list[Batch], float]:
    """The train batches of `windows` (drawn config.extra_tokens(seq_len) longer), augmented, and
    the host seconds augmentation took (batching itself excluded; 0.0 for method none)."""
    if config.method == "none":
        return [draw.to_batch() for draw in windows], 0.0
    rng = np.random.default_rng([seed, SPLITS.index("train"), AUGMENT_STREAM])
    augmentation_s = 0.0
    batches = []
    for draw in windows:
        if config.method == "span_delete":
            t0 = time.perf_counter()
            tokens = delete_spans(draw.tokens, seq_len + 1, config, rng)
            augmentation_s += time.perf_counter() - t0
            batches.append(TokenWindows(tokens, draw.lengths).to_batch())
            continue
        batch = draw.to_batch()
        if config.method in ("token_replace", "token_mask"):
            valid = batch.targets != IGNORE_INDEX  # padding keeps its input 0
            t0 = time.perf_counter()
            batch = Batch(
                corrupt_inputs(batch.inputs, valid, config, vocab_size, rng), batch.targets
            )
            augmentation_s += time.perf_counter() - t0
        batches.append(batch)
    return batches, augmentation_s
