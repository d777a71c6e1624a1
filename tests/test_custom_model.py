"""Bring your own model: a custom PyTorch module and a custom Keras model from factory files the
test writes, through `hlbench run` across precision × accumulation × pruning; a Hugging Face
LlamaForCausalLM from a config; and every way a factory can be wrong."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hlbench.cell import Cell
from hlbench.errors import UsageError
from hlbench.suite import load_suite
from tests.helpers import REPO, SHORT_MEASUREMENT, run_cli

TORCH_FACTORY = """
import torch
from torch import nn


class Net(nn.Module):
    # a causal running mean of the embeddings, then an MLP: (B, T) ids -> (B, T, V) logits
    def __init__(self, vocab_size, d_model):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.mix = nn.Linear(d_model, 2 * d_model)
        self.head = nn.Linear(2 * d_model, vocab_size)

    def forward(self, idx):
        x = self.embed(idx).cumsum(dim=1)
        x = x / torch.arange(1, idx.shape[1] + 1, device=idx.device)[:, None]
        return self.head(torch.relu(self.mix(x)))


def build(vocab_size, d_model=8):
    return Net(vocab_size, d_model)


def not_a_module(vocab_size):
    return "a string"


def wrong_vocab(vocab_size):
    return Net(vocab_size + 1, 8)


def raises():
    raise RuntimeError("no such layer")


class BadForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 4)

    def forward(self, idx):
        return self.head(idx)  # ids are integers: no embedding
"""

KERAS_FACTORY = """
import keras


def build(vocab_size, seq_len, d_model=8):
    ids = keras.Input((seq_len,), dtype="int64")
    x = keras.layers.Embedding(vocab_size, d_model)(ids)
    x = keras.layers.Dense(2 * d_model, activation="relu")(x)
    return keras.Model(ids, keras.layers.Dense(vocab_size)(x))
"""

VOCAB, SEQ_LEN = 32, 8
CUSTOM = {
    "model": "custom",
    "name": "mynet",
    "factory": {"torch": "models.py:build", "tf": "keras_models.py:build"},
    "kwargs": {"d_model": 8},
    "vocab_size": VOCAB,
    "seq_len": SEQ_LEN,
    "batch_size": 4,
}
TINY_LLAMA = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32,
}


def write(tmp_path: Path, workload: dict[str, Any], **sections: Any) -> Path:
    """The factory files and a suite of one workload in tmp_path."""
    (tmp_path / "models.py").write_text(TORCH_FACTORY)
    (tmp_path / "keras_models.py").write_text(KERAS_FACTORY)
    suite = {
        "backends": ["torch"],
        "device": "cpu",
        "workloads": [workload],
        "measurement": SHORT_MEASUREMENT,
        **sections,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def one_cell(tmp_path: Path, workload: dict[str, Any], **sections: Any) -> Any:
    (cell,) = load_suite(write(tmp_path, workload, **sections)).cells
    return cell


def counted_flops_per_token(tmp_path: Path) -> float:
    """FlopCounterMode over a forward and backward of the test's module, built here."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    namespace: dict[str, Any] = {}
    exec(compile(TORCH_FACTORY, str(tmp_path / "models.py"), "exec"), namespace)
    model = namespace["build"](VOCAB, d_model=8)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros((1, SEQ_LEN), dtype=torch.long)).sum().backward()
    return counter.get_total_flops() / SEQ_LEN


# Every value of each axis, each pair of values of two axes once (4 of the 8 combinations): the
# matrix runs through `hlbench run` in a few worker processes.
LATIN_SQUARE_EXCLUDE = [
    {"precision": "fp32", "accumulation": 1, "pruning": "magnitude"},
    {"precision": "fp32", "accumulation": 2, "pruning": "none"},
    {"precision": "bf16", "accumulation": 1, "pruning": "none"},
    {"precision": "bf16", "accumulation": 2, "pruning": "magnitude"},
    # the Keras model: one cell, bf16 and pruned (the TF path, not the whole matrix again)
    {"backend": "tf", "precision": "fp32"},
    {"backend": "tf", "accumulation": 2},
]
TORCH_IDS = {
    "mynet/torch/fp32/ga1/none",
    "mynet/torch/fp32/ga2/magnitude",
    "mynet/torch/bf16/ga1/magnitude",
    "mynet/torch/bf16/ga2/none",
}


def test_custom_models_run_through_hlbench_run_and_are_named_in_records_and_report(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    suite = write(
        tmp_path,
        CUSTOM,
        backends=["torch", "tf"],
        axes={
            "precision": ["fp32", "bf16"],
            "accumulation": [1, 2],
            "pruning": ["none", "magnitude"],
        },
        exclude=LATIN_SQUARE_EXCLUDE,
    )
    proc = run_cli("run", str(suite), "--quiet", "--no-telemetry", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (records_file,) = (tmp_path / "results" / "suite").glob("*.jsonl")
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    by_id = {r["cell_id"]: r for r in records}
    assert set(by_id) == TORCH_IDS | {"mynet/tf/bf16/ga1/magnitude"}
    assert all(r["status"] == "ok" for r in records), [
        (r["cell_id"], r.get("reason")) for r in records
    ]
    flops = counted_flops_per_token(tmp_path)
    # 6 FLOPs per weight of the two linear layers, mix (8 -> 16) and head (16 -> 32), per token
    assert flops == 6 * (8 * 16 + 16 * VOCAB)
    for cell_id, record in by_id.items():
        info = record["backend_info"]
        assert info["initial_weights"].startswith("none"), cell_id  # no cross-framework parity
        # what the factories build: embed, mix (16x8 + 16), head (32x16 + 32)
        assert info["n_params"] == VOCAB * 8 + 16 * 8 + 16 + VOCAB * 16 + VOCAB
        if "/torch/" in cell_id:
            assert info["flops_source"] == "counter (meta)"
            assert info["flops_per_token"] == pytest.approx(flops, rel=1e-9)
        else:  # the Keras model's two Dense layers: the same count
            assert info["flops_source"] == "counter (tf graph: MatMul, BatchMatMul, Einsum)"
            assert info["flops_per_token"] == flops
        if cell_id.endswith("/magnitude"):  # the two linear kernels, not the embedding
            assert info["pruning"]["sparsity_global"] == pytest.approx(0.5, abs=0.01)
            assert len(info["pruning"]["sparsity_per_layer"]) == 2
        if "/bf16/" in cell_id:
            assert info["dtypes"]["matmul_output"] == "bfloat16"
    pruned = by_id["mynet/torch/bf16/ga1/magnitude"]["backend_info"]["pruning"]
    assert sorted(pruned["sparsity_per_layer"]) == ["head.weight", "mix.weight"]
    report = run_cli("report", str(records_file), "-o", str(tmp_path / "r.md"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "mynet" in (tmp_path / "r.md").read_text()


@pytest.mark.parametrize(
    "factory, reason",
    [
        ("models.py:not_a_module", "returned str; expected a torch.nn.Module"),
        ("models.py:wrong_vocab", f"expected logits (1, {SEQ_LEN}, {VOCAB})"),
        ("models.py:raises", "raised RuntimeError: no such layer"),
        ("models.py:BadForward", f"forward of ids (1, {SEQ_LEN}) failed: RuntimeError"),
    ],
)
def test_a_wrong_factory_is_an_error_record_with_the_reason(tmp_path, factory, reason):
    pytest.importorskip("torch")
    from hlbench.worker.main import execute

    result = execute(one_cell(tmp_path, {**CUSTOM, "factory": factory, "kwargs": {}}))
    assert result["status"] == "error"
    assert reason in result["reason"] and "\n" not in result["reason"]


def test_structured_pruning_of_a_custom_model_is_skipped_with_the_reason(tmp_path):
    pytest.importorskip("torch")
    from hlbench.worker.main import execute

    result = execute(one_cell(tmp_path, CUSTOM, axes={"pruning": ["structured"]}))
    assert result["status"] == "skipped"
    assert "structured pruning" in result["reason"] and "custom" in result["reason"]


def test_hf_llama_trains_and_its_initial_loss_is_hlbenchs_loss_rule(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers", reason="transformers (hlbench[hf]) absent")
    import torch.nn.functional as F

    from hlbench.data import IGNORE_INDEX
    from hlbench.worker.inputs import corpus_for, train_batches
    from hlbench.worker.main import execute

    workload = {"model": "hf", "architecture": "LlamaForCausalLM", "config": TINY_LLAMA}
    cell = one_cell(
        tmp_path, {**workload, "vocab_size": VOCAB, "seq_len": SEQ_LEN}, optimizer={"lr": 1e-2}
    )
    assert cell.id == "hf-LlamaForCausalLM/torch/fp32/ga1/none"
    result = execute(cell)
    assert result["status"] == "ok", result.get("reason")
    losses = result["loss"]["train_loss_per_step"]
    assert losses[-1] < losses[0] - 0.1  # it learns
    # the counter (HF's masks need real tensors: on the CPU) against 6·N + 12·L·d·T
    h, kv, ff = 16, 8, 32  # hidden, one KV head of 8, MLP width
    kernels = 2 * h * h + 2 * h * kv + 3 * h * ff + h * VOCAB
    assert result["backend_info"]["flops_source"] == "counter (cpu, 1 sequence)"
    assert result["backend_info"]["flops_per_token"] == 6 * kernels + 12 * 1 * h * SEQ_LEN
    # the same module (same seed, same config) and the same first batch, by hand
    torch.manual_seed(cell.seed)
    config = transformers.LlamaConfig(**TINY_LLAMA, vocab_size=VOCAB)
    model = transformers.LlamaForCausalLM(config)
    (batch,) = train_batches(cell, corpus_for(cell), 1)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(batch.inputs)).logits
    expected = (
        F.cross_entropy(
            logits.reshape(-1, VOCAB),
            torch.from_numpy(batch.targets).reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        / batch.n_target_tokens
    )
    assert losses[0] == pytest.approx(float(expected), rel=1e-6)
    # a typo in a config key is not silently the 7B default
    typo = {**workload, "config": {**TINY_LLAMA, "hiden_size": 16}}
    result = execute(one_cell(tmp_path, {**typo, "vocab_size": VOCAB, "seq_len": SEQ_LEN}))
    assert (
        result["status"] == "error" and "LlamaConfig has no key(s) 'hiden_size'" in result["reason"]
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"factory": "missing.py:build"}, "no such file: 'missing.py'"),
        ({"factory": "models.py:nope"}, "defines no 'nope' at its top level"),
        ({"factory": "broken.py:build"}, "does not parse (line 1)"),
        ({"factory": "no_such_pkg_hlbench.models:build"}, "no module 'no_such_pkg_hlbench'"),
        ({"factory": "models.py"}, "expected 'package.module:NAME' or 'file.py:NAME'"),
        ({"factory": {"jax": "models.py:build"}}, "factory"),
        ({"factory": None}, "model custom needs `factory`"),
        ({"name": None}, "model custom needs `name`"),
        ({"size": "tiny"}, "`size` does not apply to model custom"),
        ({"kwargs": {"when": datetime.date(2024, 1, 1)}}, "only YAML strings, numbers"),
    ],
)
def test_suite_errors_of_a_custom_workload_are_one_line(tmp_path, change, message):
    (tmp_path / "broken.py").write_text("def build(:\n")
    workload = {k: v for k, v in {**CUSTOM, **change}.items() if v is not None}
    with pytest.raises(UsageError) as info:
        load_suite(write(tmp_path, workload))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_factory_is_exit_2_from_the_cli_without_a_traceback(tmp_path):
    suite = write(tmp_path, {**CUSTOM, "factory": "models.py:nope"})
    proc = run_cli("run", str(suite), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "defines no 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_gpt_keys_and_hf_without_transformers_are_refused(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="`factory` does not apply to model gpt"):
        load_suite(write(tmp_path, {"model": "gpt", "size": "tiny", "factory": "m.py:b"}))
    import hlbench.suite.custom as suite_custom

    monkeypatch.setattr(suite_custom.importlib.util, "find_spec", lambda name: None)
    workload = {"model": "hf", "architecture": "LlamaForCausalLM", "vocab_size": VOCAB}
    with pytest.raises(UsageError, match=r"pip install \"hlbench\[hf\]\""):
        load_suite(write(tmp_path, workload))


def test_editing_a_factory_file_changes_the_cell_hash(tmp_path):
    before = one_cell(tmp_path, CUSTOM)
    (tmp_path / "models.py").write_text(TORCH_FACTORY + "\n# an edit\n")
    after = load_suite(tmp_path / "suite.yaml").cells[0]
    assert before.id == after.id and before.hash != after.hash
    assert after.workload.spec.factory["torch"] == f"{tmp_path / 'models.py'}:build"
    # the worker gets the cell as JSON: the same cell, the same hash
    again = Cell.from_dict(json.loads(json.dumps(after.to_dict())))
    assert again == after and again.hash == after.hash


def test_the_readme_example_factory_builds_a_model_from_ids_to_logits(tmp_path):
    """examples/custom_model: the suite loads and its torch factory gives (B, T, V) logits."""
    torch = pytest.importorskip("torch")
    example = REPO / "examples" / "custom_model"
    suite = load_suite(example / "suite.yaml")
    assert suite.cells[0].id.startswith("tinylm/torch/")
    namespace: dict[str, Any] = {}
    exec(compile((example / "models.py").read_text(), "models.py", "exec"), namespace)
    model = namespace["build"](vocab_size=256, seq_len=16, d_model=16, n_layer=1)
    assert tuple(model(torch.zeros((2, 16), dtype=torch.long)).shape) == (2, 16, 256)


def test_the_readme_example_loads_and_its_factory_gives_logits(tmp_path):
    """The README's "Benchmark your own model" files, as written there."""
    torch = pytest.importorskip("torch")
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Benchmark your own model") :].split("\n## ")[0]
    blocks = dict(re.findall(r"```(python|yaml)\n(.*?)```", section, re.S))
    (tmp_path / "mynet.py").write_text(blocks["python"])
    (tmp_path / "mynet.yaml").write_text(blocks["yaml"])
    cells = load_suite(tmp_path / "mynet.yaml").cells
    assert [c.id for c in cells][:2] == [
        "mynet/torch/fp32/ga1/none",
        "mynet/torch/fp32/ga1/magnitude",
    ]
    namespace: dict[str, Any] = {}
    exec(compile(blocks["python"], "mynet.py", "exec"), namespace)
    model = namespace["build"](vocab_size=256, d_model=128)
    assert tuple(model(torch.zeros((2, 64), dtype=torch.long)).shape) == (2, 64, 256)
