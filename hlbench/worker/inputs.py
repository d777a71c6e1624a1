"""A cell's data: its corpus, its train batches (sampled, then augmented) and its held-out batches.

Framework-neutral NumPy, built from the cell alone, so every backend, parity's probe and the
profiling pass see the same tokens.
"""

from __future__ import annotations

from hlbench.cell import Cell
from hlbench.data import Batch, Corpus, make_batches, make_corpus, sample_windows
from hlbench.techniques.augment import AugmentationConfig, augment_batches


def corpus_for(cell: Cell) -> Corpus:
    data = cell.workload.data.corpus_config()
    return make_corpus(data, seed=cell.seed)


def augmentation_for(cell: Cell) -> AugmentationConfig:
    return AugmentationConfig.from_dict(cell.techniques.get("augmentation") or {"method": "none"})


def timed_train_batches(cell: Cell, corpus: Corpus, n_steps: int) -> tuple[list[Batch], float]:
    """The global batches of steps 0 … n_steps-1 and the host seconds their augmentation took.

    The same tokens in every backend and every cell whose global batch and augmentation are the
    same (so accumulation settings compare the same optimization). Augmentation happens here, on
    the host, after sampling."""
    w, augmentation = cell.workload, augmentation_for(cell)
    seq_len = w.seq_len
    windows = sample_windows(
        corpus,
        cell.train_seed,  # the repeat's data order; the corpus is the cell's
        n_steps,
        w.global_batch,
        seq_len,
        "train",
        w.variable_length,
        augmentation.extra_tokens(seq_len),
    )
    return augment_batches(windows, augmentation, cell.train_seed, seq_len, corpus.vocab_size)


def train_batches(cell: Cell, corpus: Corpus, n_steps: int) -> list[Batch]:
    """The global batches of steps 0 … n_steps-1 (timed_train_batches without the time)."""
    return timed_train_batches(cell, corpus, n_steps)[0]


def eval_batches(cell: Cell, corpus: Corpus) -> list[Batch]:
    """Held-out batches, evaluated micro-batch by micro-batch to stay within training's memory;
    drawn with the cell's `seed`, so every repeat's seed is judged on the same held-out tokens."""
    w, n = cell.workload, cell.measurement.eval_batches
    if n == 0:
        return []
    size = w.global_batch if w.hold == "global" else w.micro_batch
    whole = make_batches(corpus, cell.seed, n, size, w.seq_len, "eval", w.variable_length)
    chunks = size // w.micro_batch
    return [micro for batch in whole for micro in batch.split(chunks)]
