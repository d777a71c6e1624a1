"""Framework-neutral pruning masks, schedules, shrink, augmentation, and their suite settings."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hlbench.data import IGNORE_INDEX
from hlbench.suite import load_suite
from hlbench.techniques import pruning as P
from hlbench.techniques.augment import AugmentationConfig, augment_batches
from hlbench.worker.inputs import corpus_for, eval_batches, timed_train_batches, train_batches
from hlbench.workloads import get_spec

GPT = get_spec("gpt", "tiny", None)
LSTM = get_spec("lstm", "tiny", None)


def test_magnitude_masks_are_global_and_exact():
    weights = GPT.init_weights(0)
    names = P.prunable(GPT)
    assert "wte" not in names and all(n.endswith(".w") for n in names)
    masks = P.magnitude_masks(weights, names, 0.5)
    total = sum(weights[n].size for n in names)
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)
    # global, not per layer: the residual projections (smaller init) lose more than half
    assert (~masks["h.0.attn.c_proj.w"]).mean() > 0.6 and (~masks["h.0.mlp.c_fc.w"]).mean() < 0.5
    kept = np.concatenate([np.abs(weights[n][masks[n]]) for n in names])
    pruned = np.concatenate([np.abs(weights[n][~masks[n]]) for n in names])
    assert pruned.max() <= kept.min()


def test_two_four_keeps_the_two_largest_of_every_four_inputs():
    weights = LSTM.init_weights(0)
    masks = P.n_m_masks(weights, P.prunable(LSTM))
    for name, mask in masks.items():
        groups = mask.reshape(-1, 4, mask.shape[1])
        assert (groups.sum(axis=1) == 2).all(), name
        w = np.abs(weights[name]).reshape(-1, 4, mask.shape[1])
        assert (
            np.where(groups, w, np.inf).min(axis=1) >= np.where(groups, -np.inf, w).max(axis=1)
        ).all()
    pruned = {n: weights[n] * masks[n] for n in masks}
    assert P.check_n_m(pruned, list(masks))
    assert not P.check_n_m(weights, list(masks))


def test_structured_prunes_the_weakest_heads_and_neurons_per_layer():
    weights = GPT.init_weights(0)
    weights["h.1.attn.c_attn.w"][:, 32:64] *= (
        0.01  # head 1's q columns (d = 64, 2 heads of 32): weakest
    )
    units = P.structured_units(GPT, weights, 0.5)
    assert units[1]["heads"].tolist() == [True, False]
    assert all(
        u["neurons"].sum() == 128 for u in units.values()
    )  # 256 neurons, half kept per layer
    masks = P.structured_masks(GPT, units)
    masked = {n: weights[n] * masks[n] if n in masks else weights[n] for n in weights}
    assert (masked["h.1.attn.c_attn.w"][:, 32:64] == 0).all() and (
        masked["h.1.attn.c_proj.w"][32:64] == 0
    ).all()
    report = P.sparsity_report(GPT, masked, P.PruningConfig(method="structured", sparsity=0.5))
    assert report["sparsity_global"] == pytest.approx(0.5)


def test_shrink_removes_the_pruned_units_physically():
    weights = GPT.init_weights(0)
    units = P.structured_units(GPT, weights, 0.5)
    small = P.shrink_weights(GPT, weights, units)
    assert small["h.0.attn.c_attn.w"].shape == (64, 3 * 32) and small[
        "h.0.attn.c_proj.w"
    ].shape == (32, 64)
    assert small["h.0.mlp.c_fc.w"].shape == (64, 128) and small["h.0.mlp.c_proj.w"].shape == (
        128,
        64,
    )
    assert P.shrunk_shapes(GPT, units) == {"n_head_kept": 1, "d_mlp_kept": 128, "d_head": 32}
    removed = GPT.n_layer * (4 * 64 * 32 + 32 * 3 + 2 * 64 * 128 + 128)
    assert sum(w.size for w in small.values()) == GPT.n_params - removed


def test_structured_refuses_the_lstm():
    with pytest.raises(ValueError, match="only the gpt"):
        P.structured_units(LSTM, LSTM.init_weights(0), 0.5)


def test_cubic_schedule_matches_zhu_and_gupta():
    config = P.PruningConfig(
        method="magnitude",
        sparsity=0.8,
        schedule="gradual",
        start_step=10,
        end_step=50,
        every_steps=10,
    )
    assert config.event_steps(warmup_steps=3) == [10, 20, 30, 40, 50]
    for t in (10, 20, 30, 40, 50):
        assert config.sparsity_at(t) == pytest.approx(0.8 * (1 - (1 - (t - 10) / 40) ** 3))
    assert config.sparsity_at(10) == 0.0 and config.sparsity_at(50) == pytest.approx(0.8)
    oneshot = P.PruningConfig(method="magnitude", sparsity=0.5, at="after_warmup")
    assert oneshot.event_steps(warmup_steps=3) == [3] and oneshot.sparsity_at(99) == 0.5


SUITE = """\
backends: [torch, tf]
workloads: [{model: gpt, size: tiny, seq_len: 16, batch_size: 4}]
axes:
  pruning: [none, magnitude, structured-shrink]
  augmentation: [none, token_replace, token_mask, span_delete]
pruning:
  magnitude: {sparsity: 0.7}
  structured-shrink: {method: structured, sparsity: 0.5, shrink: true}
augmentation:
  token_mask: {rate: 0.2, mask_token: 3}
"""


def test_named_settings_resolve_into_the_cells(write_suite):
    cells = {c.id: c for c in load_suite(write_suite(SUITE)).cells}
    assert len(cells) == 2 * 3 * 4
    assert cells["gpt-tiny/torch/fp32/ga1/magnitude"].techniques["pruning"]["sparsity"] == 0.7
    assert (
        cells["gpt-tiny/torch/fp32/ga1/structured-shrink"].techniques["pruning"]["shrink"] is True
    )
    assert (
        cells["gpt-tiny/torch/fp32/ga1/none/token_mask"].techniques["augmentation"]["mask_token"]
        == 3
    )
    assert cells["gpt-tiny/torch/fp32/ga1/none"].techniques == {
        "pruning": {"method": "none"},
        "augmentation": {"method": "none"},
    }


@pytest.mark.parametrize(
    "settings,expected",
    [
        ("magnitude: {sparsity: 1.0}", "pruning.magnitude.sparsity: Input should be less than 1"),
        (
            "magnitude: {sparsity: -0.1}",
            "pruning.magnitude.sparsity: Input should be greater than or equal to 0",
        ),
        (
            "magnitude: {shrink: true}",
            "pruning.magnitude: shrink applies to structured pruning only",
        ),
        ("magnitude: {method: random}", "pruning.magnitude.method: Input should be"),
        ("odd: {sparsity: 0.5}", "pruning.odd: 'odd' is neither a method"),
        ("2:4: {sparsity: 0.3}", "pruning.2:4: 2:4 has a fixed sparsity of 50%"),
        (
            "magnitude: {schedule: gradual, start_step: 5, end_step: 5}",
            "end_step (5) must be after start_step (5)",
        ),
    ],
)
def test_bad_pruning_settings_are_one_line_errors(write_suite, settings, expected):
    from hlbench.errors import UsageError

    text = SUITE.replace("  magnitude: {sparsity: 0.7}", "  " + settings)
    with pytest.raises(UsageError) as info:
        load_suite(write_suite(text))
    assert expected in str(info.value) and "\n" not in str(info.value)


def _batches(cell, n=3):
    return timed_train_batches(cell, corpus_for(cell), n)


def test_augmentation_is_deterministic_identical_across_backends_and_keeps_targets(write_suite):
    cells = {c.id: c for c in load_suite(write_suite(SUITE)).cells}
    clean, _ = _batches(cells["gpt-tiny/torch/fp32/ga1/none"])
    for method in ("token_replace", "token_mask"):
        torch_b, augmentation_s = _batches(cells[f"gpt-tiny/torch/fp32/ga1/none/{method}"])
        tf_b, _ = _batches(cells[f"gpt-tiny/tf/fp32/ga1/none/{method}"])
        again, _ = _batches(cells[f"gpt-tiny/torch/fp32/ga1/none/{method}"])
        assert augmentation_s > 0
        for a, b, c, ref in zip(torch_b, tf_b, again, clean):
            assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.inputs, c.inputs)
            assert np.array_equal(a.targets, ref.targets)  # targets are never corrupted
        changed = np.mean([np.mean(a.inputs != r.inputs) for a, r in zip(torch_b, clean)])
        assert 0.02 < changed < 0.4
    masked, _ = _batches(cells["gpt-tiny/torch/fp32/ga1/none/token_mask"])
    diff = [a.inputs[a.inputs != r.inputs] for a, r in zip(masked, clean)]
    assert all((d == 3).all() for d in diff)
    spans, _ = _batches(cells["gpt-tiny/torch/fp32/ga1/none/span_delete"])
    for a in spans:  # deleted and refilled from the stream: still next-token pairs, no padding
        assert (
            np.array_equal(a.inputs[:, 1:], a.targets[:, :-1]) and (a.targets != IGNORE_INDEX).all()
        )
    assert any(not np.array_equal(a.inputs, r.inputs) for a, r in zip(spans, clean))


def test_token_augmentation_skips_padding():
    from hlbench.data import make_batches, make_corpus, sample_windows

    corpus = make_corpus({"kind": "markov", "vocab": 32, "branching": 4}, seed=0)
    config = AugmentationConfig(method="token_mask", rate=0.9)
    plain = make_batches(corpus, 0, 2, 4, 16, "train", True)
    windows = sample_windows(corpus, 0, 2, 4, 16, "train", True)
    aug, _ = augment_batches(windows, config, seed=0, seq_len=16, vocab_size=corpus.vocab_size)
    for a, p in zip(aug, plain):
        pad = p.targets == IGNORE_INDEX
        assert np.array_equal(a.inputs[pad], p.inputs[pad]) and pad.any()


GOLDEN_SUITE = """\
backends: [torch]
workloads:
  - {model: gpt, size: tiny, seq_len: 16, batch_size: 4}
  - {model: gpt, size: tiny, seq_len: 16, batch_size: 4, variable_length: true, name: gpt-var}
axes:
  augmentation: [none, token_replace, token_mask, span_delete]
augmentation:
  token_mask: {rate: 0.2, mask_token: 3}
"""

# sha256 (first 16 hex digits) of the inputs and targets of batches 0-2, as the code produced them
# when augmentation still ran inside make_batches: sampling and augmentation apart must not change
# a single token.
GOLDEN_TRAIN = {
    "gpt-tiny/torch/fp32/ga1/none": "dfce990cf81aa637",
    "gpt-tiny/torch/fp32/ga1/none/token_replace": "5b69c73d8609962c",
    "gpt-tiny/torch/fp32/ga1/none/token_mask": "0d6980bc1829e4a8",
    "gpt-tiny/torch/fp32/ga1/none/span_delete": "0abdf7492614a45c",
    "gpt-var/torch/fp32/ga1/none": "42b321abe66e77f8",
    "gpt-var/torch/fp32/ga1/none/token_replace": "c13f9f2a19a37bb4",
    "gpt-var/torch/fp32/ga1/none/token_mask": "52dbe272f8173572",
    "gpt-var/torch/fp32/ga1/none/span_delete": "d42ac881ddfb6f9a",
}
GOLDEN_EVAL = {
    "gpt-tiny/torch/fp32/ga1/none": "69bb39860574b0c8",
    "gpt-var/torch/fp32/ga1/none": "ac5fb00ca8f308a4",
}


def _digest(batches) -> str:
    h = hashlib.sha256()
    for b in batches:
        h.update(b.inputs.tobytes())
        h.update(b.targets.tobytes())
    return h.hexdigest()[:16]


def test_batches_are_bit_identical_to_the_recorded_ones(write_suite):
    cells = {c.id: c for c in load_suite(write_suite(GOLDEN_SUITE)).cells}
    assert {
        cid: _digest(train_batches(cells[cid], corpus_for(cells[cid]), 3)) for cid in GOLDEN_TRAIN
    } == GOLDEN_TRAIN
    assert {
        cid: _digest(eval_batches(cells[cid], corpus_for(cells[cid]))) for cid in GOLDEN_EVAL
    } == GOLDEN_EVAL


def test_test_hooks_parse_their_variables(monkeypatch):
    from hlbench.techniques import test_hooks as H

    for name in (
        H.STEP_DELAY_ENV,
        H.KILL_RANK_ENV,
        H.PARITY_PERTURB_ENV,
        H.PRECISION_MISMATCH_ENV,
        H.NONFINITE_STEP_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    assert (H.step_delay_s(), H.kill_rank(), H.parity_perturb()) == (0.0, None, None)
    assert (H.precision_mismatch(), H.nonfinite_step()) == (False, None)
    monkeypatch.setenv(H.STEP_DELAY_ENV, "0.25")
    monkeypatch.setenv(H.KILL_RANK_ENV, "1:3:oom")
    monkeypatch.setenv(H.PARITY_PERTURB_ENV, "tf:h.1.mlp.c_fc.w")
    monkeypatch.setenv(H.PRECISION_MISMATCH_ENV, "0")
    monkeypatch.setenv(H.NONFINITE_STEP_ENV, " 2 ")
    assert H.step_delay_s() == 0.25 and H.kill_rank() == H.KillSpec(rank=1, step=3, oom=True)
    assert H.parity_perturb() == ("tf", "h.1.mlp.c_fc.w") and H.nonfinite_step() == 2
    assert not H.precision_mismatch()
    monkeypatch.setenv(H.PRECISION_MISMATCH_ENV, "1")
    monkeypatch.setenv(H.KILL_RANK_ENV, "0:5")
    assert H.precision_mismatch() and H.kill_rank() == H.KillSpec(rank=0, step=5, oom=False)


def test_wrap_step_is_the_step_itself_unless_a_hook_is_set(monkeypatch):
    from hlbench.techniques import test_hooks as H

    monkeypatch.delenv(H.STEP_DELAY_ENV, raising=False)
    monkeypatch.setenv(H.KILL_RANK_ENV, "1:2:oom")
    seen: list[int] = []
    step = seen.append
    assert H.wrap_step(step, rank=0) is step  # another rank's kill: no wrapper
    hooked = H.wrap_step(step, rank=1)
    hooked(0)
    hooked(1)
    with pytest.raises(MemoryError, match="simulated: rank 1 cannot allocate at step 2"):
        hooked(2)
    assert seen == [0, 1]  # the failing step never ran
