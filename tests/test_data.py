import numpy as np
import pytest

from hlbench.data import (
    IGNORE_INDEX,
    Batch,
    ByteCorpus,
    MarkovCorpus,
    make_batches,
    make_corpus,
    stationary_dense,
    stationary_power,
)


def markov(vocab=16, branching=4, seed=0):
    return make_corpus({"kind": "markov", "vocab": vocab, "branching": branching}, seed)


def test_markov_structure():
    c = markov(64, 5)
    V, b = 64, 5
    assert c.successors.shape == (V, b) and c.probs.shape == (V, b)
    for s in range(V):
        assert len(set(c.successors[s])) == b
        assert (s + 1) % V in c.successors[s]  # ring: irreducible
    assert 0 in c.successors[0]  # self-loop: aperiodic
    np.testing.assert_allclose(c.probs.sum(axis=1), 1.0)
    assert (c.probs > 0).all()
    P = np.zeros((V, V))
    P[np.arange(V)[:, None], c.successors] = c.probs
    np.testing.assert_allclose(c.stationary @ P, c.stationary, atol=1e-14)
    assert c.entropy_floor_reason is None


def test_power_iteration_matches_dense_solve():
    c = markov(600, 3, seed=5)
    np.testing.assert_allclose(
        stationary_power(c.successors, c.probs),
        stationary_dense(c.successors, c.probs),
        rtol=1e-9,
        atol=1e-15,
    )


def test_entropy_floor_matches_empirical():
    c = markov(16, 4)
    (batch,) = make_batches(c, seed=1, n_batches=1, batch_size=1000, seq_len=1000)
    prev, nxt = batch.inputs.ravel(), batch.targets.ravel()  # 10^6 transitions
    # Every sampled transition is an allowed one.
    allowed = np.zeros((16, 16), dtype=bool)
    allowed[np.arange(16)[:, None], c.successors] = True
    assert allowed[prev, nxt].all()
    # Plug-in conditional entropy from counts.
    counts = np.zeros((16, 16))
    np.add.at(counts, (prev, nxt), 1)
    joint = counts / counts.sum()
    cond = counts / counts.sum(axis=1, keepdims=True)
    nz = counts > 0
    plug_in = -(joint[nz] * np.log(cond[nz])).sum()
    assert abs(plug_in - c.entropy_floor_nats) < 0.01 * c.entropy_floor_nats
    # Mean -log P(x_t | x_{t-1}) under the true chain: the loss of a perfect model.
    P = np.zeros((16, 16))
    P[np.arange(16)[:, None], c.successors] = c.probs
    nll = -np.log(P[prev, nxt]).mean()
    assert abs(nll - c.entropy_floor_nats) < 0.01 * c.entropy_floor_nats
    # First tokens follow pi (stationary start): loose check on the state-0 frequency.
    first = batch.inputs[:, 0]
    assert abs((first == 0).mean() - c.stationary[0]) < 5 * np.sqrt(c.stationary[0] / 1000) + 1e-3


def test_determinism_and_splits():
    c = markov(32, 3)
    a = make_batches(c, 7, 3, 4, 16)
    b = make_batches(c, 7, 3, 4, 16)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.inputs, y.inputs)
        np.testing.assert_array_equal(x.targets, y.targets)
    ev = make_batches(c, 7, 3, 4, 16, split="eval")
    assert not np.array_equal(a[0].inputs, ev[0].inputs)
    other = make_batches(c, 8, 3, 4, 16)
    assert not np.array_equal(a[0].inputs, other[0].inputs)
    # Same seed -> same chain; another seed -> another chain.
    np.testing.assert_array_equal(markov(32, 3, seed=1).probs, markov(32, 3, seed=1).probs)
    assert not np.array_equal(markov(32, 3, seed=1).probs, markov(32, 3, seed=2).probs)
    x = a[0]
    assert x.inputs.dtype == np.int64 and x.targets.dtype == np.int64
    assert x.inputs.shape == (4, 16)
    np.testing.assert_array_equal(x.inputs[:, 1:], x.targets[:, :-1])  # targets are shifted inputs


def test_variable_length_masks():
    c = markov(32, 3)
    T = 40
    fixed = make_batches(c, 3, 2, 64, T)
    (batch, _) = make_batches(c, 3, 2, 64, T, variable_length=True)
    pad = batch.targets == IGNORE_INDEX
    lengths = T - pad.sum(axis=1)
    assert lengths.min() >= T // 4 and lengths.max() <= T
    assert len(set(lengths.tolist())) > 1
    for r, n in enumerate(lengths):
        assert not pad[r, :n].any() and pad[r, n:].all()
        assert (batch.inputs[r, n:] == 0).all()
        # Unpadded positions are the same tokens as the fixed-length stream's windows.
        np.testing.assert_array_equal(batch.inputs[r, :n], fixed[0].inputs[r, :n])
    assert batch.n_target_tokens == lengths.sum()
    assert fixed[0].n_target_tokens == 64 * T


def test_variable_length_minimum_is_one():
    c = markov(8, 2)
    batches = make_batches(c, 0, 5, 32, 3, variable_length=True)
    lengths = np.concatenate([3 - (b.targets == IGNORE_INDEX).sum(axis=1) for b in batches])
    assert lengths.min() >= 1 and set(lengths.tolist()) <= {1, 2, 3}


def test_variable_length_single_row_pads_inputs_with_zero():
    c = markov(16, 4)
    for seed in range(20):
        (batch,) = make_batches(c, seed, 1, 1, 16, variable_length=True)
        pad = batch.targets == IGNORE_INDEX
        assert (batch.inputs[pad] == 0).all() and (batch.inputs >= 0).all()
        valid = ~pad[0]
        assert np.array_equal(batch.inputs[0, 1:][valid[1:]], batch.targets[0, :-1][valid[1:]])


def test_batch_split():
    c = markov(16, 2)
    (batch,) = make_batches(c, 0, 1, 8, 5, variable_length=True)
    parts = batch.split(4)
    assert len(parts) == 4 and all(len(p) == 2 for p in parts)
    np.testing.assert_array_equal(np.concatenate([p.inputs for p in parts]), batch.inputs)
    np.testing.assert_array_equal(np.concatenate([p.targets for p in parts]), batch.targets)
    assert sum(p.n_target_tokens for p in parts) == batch.n_target_tokens
    assert len(batch.split(1)) == 1
    with pytest.raises(ValueError, match="multiple"):
        batch.split(3)
    with pytest.raises(ValueError):
        batch.split(0)
    with pytest.raises(ValueError, match="same"):
        Batch(np.zeros((2, 3), np.int64), np.zeros((2, 4), np.int64))


def test_byte_corpus(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=2000, dtype=np.uint8).tobytes()
    path = tmp_path / "corpus.bin"
    path.write_bytes(data)
    c = make_corpus({"kind": "bytes", "path": str(path)}, seed=0)
    assert isinstance(c, ByteCorpus)
    assert c.vocab_size == 256
    assert c.entropy_floor_nats is None and c.entropy_floor_reason == "unknown for a byte corpus"
    desc = c.describe()
    assert desc["kind"] == "bytes" and desc["path"] == str(path) and len(desc["sha256"]) == 64
    T = 32
    eval_start = 2000 - 200
    for split in ("train", "eval"):
        (batch,) = make_batches(c, 0, 1, 64, T, split=split)
        windows = np.concatenate([batch.inputs, batch.targets[:, -1:]], axis=1)
        for row in windows:
            at = data.find(bytes(row.astype(np.uint8)))
            assert at >= 0  # a substring of the file
            if split == "eval":
                assert at >= eval_start
            else:
                assert at + T + 1 <= eval_start


def test_byte_corpus_too_short(tmp_path):
    path = tmp_path / "short.txt"
    path.write_bytes(b"x" * 100)  # eval tenth = 10 bytes
    c = make_corpus({"kind": "bytes", "path": str(path)}, seed=0)
    make_batches(c, 0, 1, 2, 9)  # 10-byte windows just fit
    with pytest.raises(ValueError, match=r"short\.txt has 100 bytes.*at least 101 bytes"):
        make_batches(c, 0, 1, 2, 10)
    tiny = tmp_path / "tiny.txt"
    tiny.write_bytes(b"abc")
    with pytest.raises(ValueError, match="tiny.txt"):
        make_corpus({"kind": "bytes", "path": str(tiny)}, seed=0)


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"kind": "zip"}, "unknown corpus kind 'zip'; choose from: markov, bytes"),
        ({"vocab": 3}, "unknown corpus kind None"),
        ({"kind": "markov", "vocab": 16}, "missing key.*branching"),
        ({"kind": "markov", "vocab": 16, "branching": 2, "order": 2}, "unknown key.*order"),
        ({"kind": "markov", "vocab": 16, "branching": 17}, "branching 17 exceeds vocab 16"),
        ({"kind": "markov", "vocab": 16, "branching": 1}, "branching must be an integer >= 2"),
        ({"kind": "markov", "vocab": 1, "branching": 2}, "vocab must be an integer >= 2"),
        ({"kind": "markov", "vocab": "16", "branching": 2}, "vocab must be an integer"),
        ({"kind": "bytes", "path": "/nonexistent/corpus.txt"}, "file not found: /nonexistent"),
    ],
)
def test_make_corpus_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        make_corpus(cfg, seed=0)


def test_make_batches_errors():
    c = markov(8, 2)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        make_batches(c, 0, 1, 2, 4, split="test")
    with pytest.raises(ValueError, match="batch_size"):
        make_batches(c, 0, 1, 0, 4)


def test_large_vocab_builds():
    c = markov(50304, 8)
    assert isinstance(c, MarkovCorpus)
    assert abs(c.stationary.sum() - 1) < 1e-12 and (c.stationary > 0).all()
    assert 0 < c.entropy_floor_nats < np.log(8)
    (batch,) = make_batches(c, 0, 1, 16, 1024)
    assert batch.inputs.max() < 50304
    assert c.describe() == {
        "kind": "markov",
        "vocab": 50304,
        "branching": 8,
        "seed": 0,
        "entropy_floor_nats": c.entropy_floor_nats,
    }
