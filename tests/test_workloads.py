import dataclasses
import json
import math

import numpy as np
import pytest

from hlbench.workloads import MODELS, GPTSpec, LlamaSpec, LSTMSpec, get_spec

ALL_SPECS = [(m, s) for m, presets in MODELS.items() for s in presets]
SMALL_SPECS = [("gpt", "tiny"), ("gpt", "small"), ("lstm", "tiny"), ("lstm", "small")]


@pytest.mark.parametrize("model,size", SMALL_SPECS)
def test_init_matches_shapes_and_is_float32(model, size):
    spec = get_spec(model, size)
    shapes = spec.param_shapes()
    weights = spec.init_weights(0)
    assert list(weights) == list(shapes)
    for name, w in weights.items():
        assert w.shape == shapes[name], name
        assert w.dtype == np.float32, name
    assert spec.n_params == sum(w.size for w in weights.values())


@pytest.mark.parametrize("model,size", SMALL_SPECS)
def test_init_deterministic_per_seed(model, size):
    spec = get_spec(model, size)
    a, b, c = spec.init_weights(1), spec.init_weights(1), spec.init_weights(2)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    random_names = [n for n in a if np.unique(a[n]).size > 2]
    assert random_names
    for name in random_names:
        assert not np.array_equal(a[name], c[name]), name


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_tensor_independent_of_vocab(model):
    # Per-name generators: a hidden-layer tensor is the same whatever the vocabulary.
    name = "h.0.mlp.c_fc.w" if model == "gpt" else "lstm.0.wh"
    a = get_spec(model, "tiny", vocab_size=256).init_weights(3)
    b = get_spec(model, "tiny", vocab_size=512).init_weights(3)
    np.testing.assert_array_equal(a[name], b[name])
    emb = "wte" if model == "gpt" else "embed"
    assert a[emb].shape[0] == 256 and b[emb].shape[0] == 512


def test_gpt_init_statistics():
    spec = get_spec("gpt", "small")
    w = spec.init_weights(0)
    assert abs(w["h.0.mlp.c_fc.w"].std() - 0.02) < 0.05 * 0.02
    assert abs(w["h.1.attn.c_attn.w"].std() - 0.02) < 0.05 * 0.02
    assert abs(w["wte"].std() - 0.02) < 0.05 * 0.02
    residual = 0.02 / math.sqrt(2 * spec.n_layer)
    for name in ("h.2.mlp.c_proj.w", "h.3.attn.c_proj.w"):
        assert abs(w[name].std() - residual) < 0.05 * residual, name
    assert abs(w["h.0.mlp.c_fc.w"].mean()) < 1e-3
    for name, arr in w.items():
        if name.endswith(".g"):
            np.testing.assert_array_equal(arr, 1.0)
        elif name.endswith(".b"):
            np.testing.assert_array_equal(arr, 0.0)


def test_lstm_init_statistics():
    spec = get_spec("lstm", "small")
    w = spec.init_weights(0)
    h = spec.d_hidden
    bound = 1 / math.sqrt(h)
    for name in ("lstm.0.wx", "lstm.1.wh"):
        assert np.abs(w[name]).max() <= bound
        assert abs(w[name].std() - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)
    assert abs(w["head.w"].std() - 0.02) < 0.05 * 0.02
    np.testing.assert_array_equal(w["head.b"], 0.0)
    for i in range(spec.n_layer):
        b = w[f"lstm.{i}.b"]
        np.testing.assert_array_equal(b[h : 2 * h], 1.0)  # gate order i, f, g, o
        np.testing.assert_array_equal(b[:h], 0.0)
        np.testing.assert_array_equal(b[2 * h :], 0.0)
    assert spec.param_shapes()["lstm.0.wx"] == (spec.d_embed, 4 * h)
    assert spec.param_shapes()["lstm.1.wx"] == (h, 4 * h)
    assert spec.context is None


def test_gpt2_small_param_count():
    # The published GPT-2 small count, head tied to wte.
    assert get_spec("gpt", "gpt2-124m", vocab_size=50257).n_params == 124_439_808


def test_gpt_flops_hand_computed():
    # tiny: L2, d64, P64, V256. Per block: 2 LN (4d) + c_attn (3d^2 + 3d) + c_proj (d^2 + d)
    # + c_fc (4d^2 + 4d) + c_proj (4d^2 + d) = 12d^2 + 13d.
    d, L, V, P = 64, 2, 256, 64
    n_params = V * d + P * d + L * (12 * d * d + 13 * d) + 2 * d
    spec = get_spec("gpt", "tiny")
    assert spec.n_params == n_params
    assert spec.n_params_flops == n_params - P * d
    assert spec.flops_per_token(32) == 6 * (n_params - P * d) + 12 * L * d * 32
    assert spec.context == 64
    with pytest.raises(ValueError, match="context"):
        spec.flops_per_token(65)


def test_lstm_flops_hand_computed():
    # tiny: d_embed 64, h 64, L1, V256.
    e, h, V = 64, 64, 256
    n_params = V * e + (e * 4 * h + h * 4 * h + 4 * h) + (h * V + V)
    spec = get_spec("lstm", "tiny")
    assert spec.n_params == n_params
    assert spec.n_params_flops == n_params - V * e
    assert spec.flops_per_token(10) == spec.flops_per_token(1000) == 6 * (n_params - V * e)


def test_decayed():
    gpt = get_spec("gpt", "tiny")
    assert gpt.decayed("wte") and gpt.decayed("wpe") and gpt.decayed("h.0.attn.c_attn.w")
    assert not gpt.decayed("h.0.attn.c_attn.b")
    assert not gpt.decayed("h.1.ln_2.g") and not gpt.decayed("ln_f.b")
    lstm = get_spec("lstm", "tiny")
    assert lstm.decayed("embed") and lstm.decayed("lstm.0.wh") and lstm.decayed("head.w")
    assert not lstm.decayed("lstm.0.b") and not lstm.decayed("head.b")
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        gpt.decayed("nope")


def test_unknown_names_list_choices():
    with pytest.raises(
        ValueError,
        match=r"unknown size 'huge' for model 'gpt'; choose from: "
        r"tiny, small, medium, gpt2-124m, gpt2-350m",
    ):
        get_spec("gpt", "huge")
    with pytest.raises(ValueError, match=r"unknown model 'rnn'; choose from: gpt, lstm, llama"):
        get_spec("rnn", "tiny")


def test_spec_validation():
    with pytest.raises(ValueError, match="not divisible"):
        GPTSpec(
            model="gpt", size="x", vocab_size=10, n_layer=1, n_head=3, d_model=64, n_positions=8
        )
    with pytest.raises(ValueError, match="vocab_size"):
        get_spec("lstm", "tiny", vocab_size=0)


@pytest.mark.parametrize("model,size", ALL_SPECS)
def test_to_dict_json_and_frozen(model, size):
    spec = get_spec(model, size)
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["model"] == model and d["size"] == size and d["vocab_size"] == spec.vocab_size
    assert isinstance(spec, {"gpt": GPTSpec, "lstm": LSTMSpec, "llama": LlamaSpec}[model])
    with pytest.raises(AttributeError):
        spec.vocab_size = 3  # frozen


def test_vocab_override_keeps_preset():
    spec = get_spec("gpt", "gpt2-124m", vocab_size=256)
    assert spec.vocab_size == 256 and spec.d_model == 768
    assert get_spec("gpt", "gpt2-124m").vocab_size == 50304


def test_imports_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, hlbench.workloads, hlbench.data; "
        "bad = {'torch', 'tensorflow', 'jax'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_spec_of_a_cell_reads_its_model_ref():
    from hlbench.cell import Cell, Measurement, ModelRef, Optimizer, Workload
    from hlbench.workloads import model_spec

    base = get_spec("gpt", "tiny", vocab_size=100)
    ref = ModelRef(**{**base.to_dict(), "n_head_kept": 1, "d_mlp": 64})
    workload = Workload(
        "w", ref, {"kind": "markov", "vocab": 100, "branching": 4}, 16, 8, 8, "global", False
    )
    measurement = Measurement(1, 1, 1, 1, 1.0, 1.0, 0)
    optimizer = Optimizer("adamw", 1e-3, (0.9, 0.95), 1e-8, 0.1, None)
    cell = Cell(workload, "torch", "cpu", {}, measurement, optimizer, 0)
    spec = model_spec(cell)
    assert spec == dataclasses.replace(base, n_head_kept=1, d_mlp=64)
    assert (
        model_spec(
            dataclasses.replace(cell, workload={**workload.to_dict(), "spec": base.to_dict()})
        )
        == base
    )
