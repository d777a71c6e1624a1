"""The llama workload: its spec (GQA check, presets, FLOPs against FlopCounterMode), fp32 parity
between PyTorch and TensorFlow, every precision level's dtype proof, structured pruning in whole
key/value groups (masked = shrunk), and one `hlbench run` across precision and pruning."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from hlbench import parity
from hlbench.cell import ModelRef
from hlbench.suite import load_suite
from hlbench.techniques import precision
from hlbench.techniques import pruning as P
from hlbench.workloads import get_spec
from tests.helpers import REPO, build_trainer, run_cli, suite_yaml

TINY = {"model": "llama", "size": "tiny", "seq_len": 32, "batch_size": 8}
LEVELS = ["fp32", "bf16", "fp16", "bf16-pure"]


def _backend(name: str):
    if name == "torch":
        pytest.importorskip("torch")
        from hlbench.backends.torch.backend import TorchBackend

        return TorchBackend()
    pytest.importorskip("tensorflow")
    from hlbench.backends.tf.backend import TFBackend

    return TFBackend()


def _cells(write_suite, **sections):
    text = suite_yaml(**{"backends": ["torch", "tf"], "workloads": [TINY], **sections})
    return load_suite(write_suite(text)).cells


# ---------------------------------------------------------------- the spec (no framework)


def test_grouped_query_attention_needs_kv_heads_dividing_heads():
    tiny = get_spec("llama", "tiny")
    with pytest.raises(ValueError, match="n_kv_head 3 does not divide n_head 4"):
        dataclasses.replace(tiny, n_kv_head=3)
    with pytest.raises(ValueError, match="must be an even integer"):
        dataclasses.replace(tiny, n_head=4, n_kv_head=4, d_model=36)  # d_head 9: no rotary pairs
    with pytest.raises(ValueError, match="norm_eps must be a positive number"):
        dataclasses.replace(tiny, norm_eps=0.0)
    with pytest.raises(ValueError, match="whole key/value groups"):
        dataclasses.replace(tiny, n_head_kept=3)  # groups of 2 query heads


def test_presets_shapes_and_counts():
    tiny = get_spec("llama", "tiny")
    shapes = tiny.param_shapes()
    assert shapes["h.0.attn.q_proj.w"] == (64, 64) and shapes["h.0.attn.k_proj.w"] == (64, 32)
    assert shapes["h.1.mlp.down_proj.w"] == (176, 64) and shapes["lm_head.w"] == (64, 256)
    assert not any(n.endswith(".b") for n in shapes)  # no biases
    tied = dataclasses.replace(tiny, tie_embeddings=True)
    assert "lm_head.w" not in tied.param_shapes() and tied.n_params == tiny.n_params - 64 * 256
    assert 2e6 < get_spec("llama", "small").n_params < 5e6
    assert get_spec("llama", "125m").n_params == pytest.approx(125e6, rel=0.02)
    assert get_spec("llama", "1b").n_params == pytest.approx(1.1e9, rel=0.02)
    weights = tiny.init_weights(0)
    assert list(weights) == list(shapes) and all(w.dtype == np.float32 for w in weights.values())
    assert weights["h.0.attn_norm.g"].tolist() == [1.0] * 64
    # the cell's model reference round-trips the spec, rope_theta and norm_eps included
    assert ModelRef.from_dict(tiny.to_dict()).to_dict() == tiny.to_dict()


def test_rope_tables_rotate_position_zero_by_nothing():
    spec = get_spec("llama", "tiny")
    cos, sin = spec.rope_tables()
    assert cos.shape == sin.shape == (spec.n_positions, spec.d_head)
    assert (cos[0] == 1).all() and (sin[0] == 0).all()
    half = spec.d_head // 2
    np.testing.assert_array_equal(cos[:, :half], cos[:, half:])  # HF's cat(freqs, freqs)
    np.testing.assert_allclose(sin[1, 0], np.sin(1.0), rtol=1e-6)  # pair 0 turns 1 rad / token


@pytest.mark.parametrize(
    "size,tied", [("tiny", False), ("tiny", True), ("small", False), ("125m", False), ("1b", False)]
)
def test_flops_per_token_matches_torch_flop_counter(size, tied):
    """6·N + 12·L·A·T against FlopCounterMode on a forward + backward of the PyTorch module, on
    the meta device (shapes only)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from hlbench.backends.torch.models import build_model

    spec = dataclasses.replace(get_spec("llama", size), tie_embeddings=tied)
    T = min(spec.context, 512)
    with torch.device("meta"):
        model = build_model(spec)
        idx = torch.zeros((1, T), dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        model(idx).sum().backward()
    measured = counter.get_total_flops() / T
    assert spec.flops_per_token(T) == pytest.approx(measured, rel=0.02)


# ---------------------------------------------------------------- both frameworks


def test_fp32_parity_between_pytorch_and_tensorflow(write_suite):
    """The parity probe (hlbench parity's): same loaded weights, initial loss ≤ 1e-6 relative,
    first-step gradients, 20 AdamW steps."""
    group = _cells(write_suite)
    assert [c.backend for c in group] == ["torch", "tf"]
    probes = [parity.probe(c, _backend(c.backend), parity.DEFAULT_STEPS) for c in group]
    checks = {c["name"]: c for c in parity.compare(probes, parity.TOLERANCES["fp32"], 20)}
    failed = [c for c in checks.values() if not c["passed"]]
    assert not failed, failed
    assert checks["initial_weights"]["rel_diff"] == 0.0
    assert checks["initial_loss"]["rel_diff"] <= 1e-6
    torch_losses, tf_losses = (np.array(p.train_losses) for p in probes)
    assert len(tf_losses) == 20 and tf_losses[-1] < tf_losses[0]
    np.testing.assert_allclose(tf_losses, torch_losses, rtol=1e-4)


def test_tied_head_gives_the_same_logits_in_both_frameworks():
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    from hlbench.backends.tf.models import build_model as tf_build
    from hlbench.backends.torch.models import build_model, load_weights

    spec = dataclasses.replace(get_spec("llama", "tiny"), tie_embeddings=True)
    weights = spec.init_weights(1)
    idx = np.random.default_rng(0).integers(0, spec.vocab_size, size=(2, 16))
    model = build_model(spec)
    load_weights(model, spec, weights)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(idx)).numpy()
    tf_logits = tf_build(spec, weights)(tf.constant(idx)).numpy()
    np.testing.assert_allclose(tf_logits, torch_logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_every_precision_level_records_its_dtypes(write_suite, backend):
    from hlbench.worker.inputs import corpus_for, train_batches

    cells = _cells(write_suite, backends=[backend], axes={"precision": LEVELS})
    for cell in cells:
        level = cell.axes["precision"]
        trainer = build_trainer(_backend(backend), cell)
        (batch,) = train_batches(cell, corpus_for(cell), 1)
        loss = trainer.losses_to_floats([trainer.train_step(batch)])
        assert np.isfinite(loss).all(), level
        info = trainer.info()
        want = precision.expected(level)
        assert {k: info["dtypes"][k] for k in want} == want, level
        bytes_per = 2 if level == "bf16-pure" else 4
        assert info["param_bytes"] == get_spec("llama", "tiny").n_params * bytes_per, level


def test_structured_pruning_removes_whole_kv_groups_and_shrinking_keeps_the_function(write_suite):
    torch = pytest.importorskip("torch")
    from hlbench.backends.torch.models import build_model, load_weights

    spec = get_spec("llama", "tiny")
    weights = spec.init_weights(0)
    units = P.structured_units(spec, weights, 0.5)
    for keep in units.values():  # 1 of 2 groups: both of its query heads go with it
        assert keep["kv_heads"].sum() == 1 and keep["heads"].tolist() in (
            [1, 1, 0, 0],
            [0, 0, 1, 1],
        )
        assert keep["neurons"].sum() == 88
    masks = P.structured_masks(spec, units)
    assert set(masks) == set(P.maskable(spec, P.PruningConfig(method="structured")))
    masked = {**weights, **{n: weights[n] * m for n, m in masks.items()}}
    small_spec = P.shrunk_spec(spec, units)
    small = P.shrink_weights(spec, weights, units)
    assert (small_spec.heads, small_spec.kv_heads, small_spec.mlp_width) == (2, 1, 88)
    assert small_spec.flops_per_token(32) < spec.flops_per_token(32)
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(2, 32)))
    logits = []
    for s, w in ((spec, masked), (small_spec, small)):
        model = build_model(s)
        load_weights(model, s, w)
        with torch.no_grad():
            logits.append(model(idx).numpy())
    np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-6)


SHRINK = {"shrink": {"method": "structured", "sparsity": 0.5, "shrink": True}}
SHORT = {"warmup_steps": 1, "steps": 2, "windows": 1, "eval_batches": 1}


def test_hlbench_run_across_precision_and_structured_pruning(tmp_path):
    """One suite through the CLI (PyTorch): fp32 and bf16 × none and structured with shrink, less
    bf16 unpruned; every cell ok, records named after the workload."""
    suite = tmp_path / "llama.yaml"
    suite.write_text(
        suite_yaml(
            name="llama-axes",
            workloads=[{**TINY, "seq_len": 16, "batch_size": 4}],
            axes={"precision": ["fp32", "bf16"], "pruning": ["none", "shrink"]},
            pruning=SHRINK,
            exclude=[{"precision": "bf16", "pruning": "none"}],
            measurement=SHORT,
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    proc = run_cli("run", str(suite), "--quiet", "--results-dir", str(out), cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    records = [
        json.loads(line) for f in out.rglob("*.jsonl") for line in f.read_text().splitlines()
    ]
    by_id = {r["cell_id"]: r for r in records}
    assert sorted(by_id) == [
        "llama-tiny/torch/bf16/ga1/shrink",
        "llama-tiny/torch/fp32/ga1/none",
        "llama-tiny/torch/fp32/ga1/shrink",
    ]
    assert all(r["status"] == "ok" for r in records), [(r["cell_id"], r["reason"]) for r in records]
    tiny = get_spec("llama", "tiny")
    full = by_id["llama-tiny/torch/fp32/ga1/none"]["backend_info"]
    assert full["n_params"] == tiny.n_params and full["flops_per_token"] == tiny.flops_per_token(16)
    for level in ("fp32", "bf16"):
        shrunk = by_id[f"llama-tiny/torch/{level}/ga1/shrink"]["backend_info"]
        assert shrunk["pruning"]["shrink_shapes"] == {
            "n_head_kept": 2,
            "d_mlp_kept": 88,
            "d_head": 16,
        }
        assert (
            shrunk["n_params"] < tiny.n_params
            and shrunk["flops_per_token"] < full["flops_per_token"]
        )


def test_structured_pruning_in_tensorflow_masked_and_shrunk(write_suite):
    """The TensorFlow trainer on the same pruning: masks on whole groups stay zero, and the shrunk
    model trains with the torch shapes."""
    from hlbench.worker.train import run_cell

    cells = _cells(
        write_suite,
        backends=["tf"],
        workloads=[{**TINY, "seq_len": 16, "batch_size": 4}],
        axes={"pruning": ["structured", "shrink"]},
        pruning=SHRINK,
        measurement=SHORT,
    )
    reports = {c.axes["pruning"]: run_cell(c, _backend("tf"))["backend_info"] for c in cells}
    masked = reports["structured"]["pruning"]
    assert masked["sparsity_global"] == 0.5 and masked["execution"] == "dense kernels with masks"
    shrunk = reports["shrink"]
    assert shrunk["pruning"]["shrink_shapes"] == {"n_head_kept": 2, "d_mlp_kept": 88, "d_head": 16}
    # what the masks zero is exactly what shrinking removes
    assert shrunk["n_params"] == masked["n_params_nonzero"] < masked["n_params"]
