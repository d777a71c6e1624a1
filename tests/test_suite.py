"""Suite loading: the schema, the matrix, ids and hashes, and every kind of bad input (exit 2, one
line)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hlbench.cell import (
    BytesData,
    Cell,
    Launch,
    MarkovData,
    Measurement,
    ModelRef,
    Optimizer,
    Workload,
)
from hlbench.cli import main
from hlbench.errors import UsageError
from hlbench.suite import load_suite
from hlbench.techniques.pruning import DEFAULT_SPARSITY, PruningConfig

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
name: t
backends: [torch]
workloads:
  - {model: gpt, size: tiny, seq_len: 16, batch_size: 8}
  - {model: lstm, size: tiny, seq_len: 16, batch_size: 4}
axes:
  precision: [fp32, bf16]
  accumulation: [1, 4]
  pruning: [none, magnitude]
exclude:
  - {workload: lstm-tiny, accumulation: 4}
optimizer: {lr: 3e-4, betas: [0.9, 0.99]}
"""


def test_matrix_is_product_minus_exclusions(write_suite):
    suite = load_suite(write_suite(GOOD))
    ids = [c.id for c in suite.cells]
    assert len(ids) == 2 * 2 * 2 + 1 * 2 * 2  # gpt: full product; lstm: ga4 excluded
    assert "gpt-tiny/torch/fp32/ga4/none" in ids
    assert not any(i.startswith("lstm-tiny") and "/ga4/" in i for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({c.hash for c in suite.cells}) == len(ids)


def test_repeats_run_interleaved_across_cells(write_suite):
    """Every cell's repeat 0, then every cell's repeat 1, ...: a drift of the machine during the
    suite lands on every cell, not on the cell that happened to run last. A resumed run keeps the
    order for what is left."""
    from hlbench.sweep.plan import plan

    suite = load_suite(
        write_suite(GOOD.replace("optimizer:", "measurement: {repeats: 3}\noptimizer:"))
    )
    cells = [c.hash for c in suite.cells]
    tasks = plan(suite, set())
    assert [(t.cell.hash, t.repeat) for t in tasks] == [(h, r) for r in range(3) for h in cells]
    done = {(cells[0], 0), (cells[1], 1)}
    left = [(t.cell.hash, t.repeat) for t in plan(suite, done)]
    assert left == [(h, r) for r in range(3) for h in cells if (h, r) not in done]


def test_accumulation_holds_global_batch_by_default(write_suite):
    cell = next(
        c for c in load_suite(write_suite(GOOD)).cells if c.id == "gpt-tiny/torch/fp32/ga4/none"
    )
    assert (cell.workload.global_batch, cell.workload.micro_batch) == (8, 2)


def test_hold_micro_multiplies_global_batch(write_suite):
    suite = load_suite(write_suite(GOOD.replace("batch_size: 8}", "batch_size: 3, hold: micro}")))
    cell = next(c for c in suite.cells if c.id == "gpt-tiny/torch/fp32/ga4/none")
    assert (cell.workload.global_batch, cell.workload.micro_batch) == (12, 3)


def test_yaml12_floats_and_defaults(write_suite):
    suite = load_suite(write_suite(GOOD))
    assert suite.config.optimizer.lr == pytest.approx(3e-4)
    assert suite.config.device == "auto" and suite.config.seed == 0


def test_hash_tracks_what_affects_numbers(write_suite):
    base = {c.id: c.hash for c in load_suite(write_suite(GOOD)).cells}
    same = {
        c.id: c.hash
        for c in load_suite(write_suite(GOOD.replace("name: t", "name: renamed"))).cells
    }
    assert same == base  # the suite's name changes no number
    timeout = {
        c.id: c.hash for c in load_suite(write_suite(GOOD + "measurement: {timeout_s: 5}\n")).cells
    }
    assert timeout == base  # nor does the worker timeout
    lr = {c.id: c.hash for c in load_suite(write_suite(GOOD.replace("3e-4", "1e-3"))).cells}
    assert all(lr[i] != base[i] for i in base)
    seed = {c.id: c.hash for c in load_suite(write_suite(GOOD + "seed: 1\n")).cells}
    assert all(seed[i] != base[i] for i in base)


# Hashes of shipped cells as computed before cells held typed configs: a change here means every
# stored record and baseline stops matching its cell, so it must be deliberate.
PINNED_HASHES = {
    ("smoke.yaml", "gpt-tiny/torch/fp32/ga1/none"): "5aecdc78fc60ac4a",
    ("smoke.yaml", "gpt-tiny/tf/bf16/ga2/none"): "1de5de01bd32f92b",
    ("smoke.yaml", "lstm-tiny/tf/fp32/ga2/none"): "4140581fd8e8e92e",
    ("default.yaml", "gpt-small/torch/bf16-pure/ga4/none"): "c6b98cf3bea84ad6",
    ("default.yaml", "lstm-small/tf/bf16/ga1/none"): "a2580feb30ec111e",
    ("pruning.yaml", "gpt-small/torch/fp32/ga1/structured-shrink"): "6f21e542654fa852",
    ("pruning.yaml", "gpt-small/tf/fp32/ga1/2:4"): "88e7f95b89c36244",
    ("ddp-cpu.yaml", "gpt-tiny/tf/fp32/ga2/none/mirrored2"): "8307d85e2266b4d8",
    ("two-nodes.yaml", "gpt-gpt2-124m/torch/bf16/ga1/none/ddp8x2"): "91a3a66dd36de6d3",
}


def test_cell_hashes_are_pinned():
    for (suite, cell_id), expected in PINNED_HASHES.items():
        cells = {c.id: c for c in load_suite(REPO / "suites" / suite).cells}
        assert cells[cell_id].hash == expected, (suite, cell_id)


def test_cell_dict_is_the_record_format():
    cell = {c.id: c for c in load_suite(REPO / "suites" / "pruning.yaml").cells}[
        "gpt-small/torch/fp32/ga1/structured-shrink"
    ]
    expected = {
        "workload": {
            "name": "gpt-small",
            "spec": {
                "model": "gpt",
                "size": "small",
                "vocab_size": 256,
                "n_layer": 4,
                "n_head": 4,
                "d_model": 256,
                "n_positions": 256,
            },
            "data": {"kind": "markov", "vocab": 256, "branching": 8},
            "seq_len": 128,
            "global_batch": 16,
            "micro_batch": 16,
            "hold": "global",
            "variable_length": False,
        },
        "backend": "torch",
        "device": "auto",
        "axes": {
            "precision": "fp32",
            "accumulation": 1,
            "pruning": "structured-shrink",
            "compile": False,
            "augmentation": "none",
        },
        "measurement": {
            "warmup_steps": 3,
            "steps": 10,
            "windows": 3,
            "repeats": 1,
            "budget_s": 60.0,
            "timeout_s": 600.0,
            "eval_batches": 4,
        },
        "optimizer": {
            "name": "adamw",
            "lr": 0.001,
            "betas": [0.9, 0.95],
            "eps": 1e-08,
            "weight_decay": 0.1,
            "grad_clip_norm": 1.0,
        },
        "seed": 0,
        "techniques": {
            "pruning": {
                "method": "structured",
                "sparsity": 0.5,
                "schedule": "oneshot",
                "at": "init",
                "start_step": 0,
                "end_step": 0,
                "every_steps": 1,
                "shrink": True,
                "sparse_kernels": False,
            },
            "augmentation": {"method": "none"},
        },
        "launch": None,
    }
    # same keys in the same order: records are this dict as JSON
    assert json.dumps(cell.to_dict()) == json.dumps(expected)


TYPED = """\
backends: [torch, tf]
workloads:
  - {model: gpt, size: tiny, seq_len: 16, batch_size: 8, data: {kind: bytes, path: corpus.txt}}
  - {model: lstm, size: tiny, seq_len: 16, batch_size: 4}
optimizer: {betas: [0.9, 0.99]}
launcher: {nproc_per_node: 2}
"""


def test_cells_hold_typed_configs_and_round_trip(write_suite, tmp_path):
    (tmp_path / "corpus.txt").write_text("hello world, " * 400)
    cells = load_suite(write_suite(TYPED)).cells + load_suite(REPO / "suites/default.yaml").cells
    for cell in cells:
        assert isinstance(cell.workload, Workload) and isinstance(cell.workload.spec, ModelRef)
        assert isinstance(cell.workload.data, (MarkovData, BytesData))
        assert isinstance(cell.measurement, Measurement) and isinstance(cell.optimizer, Optimizer)
        assert cell.launch is None or isinstance(cell.launch, Launch)
        as_json = json.dumps(cell.to_dict())
        again = Cell.from_dict(json.loads(as_json))
        assert json.dumps(again.to_dict()) == as_json and again == cell and again.hash == cell.hash
    gpt = cells[0]
    assert gpt.workload.spec.n_head == 2 and gpt.workload.spec.d_embed is None
    assert gpt.optimizer.betas == (0.9, 0.99) and gpt.launch.world_size == 2
    assert list(cells[-1].workload.spec.to_dict()) == [
        "model",
        "size",
        "vocab_size",
        "d_embed",
        "d_hidden",
        "n_layer",
    ]  # an LSTM's spec keys in LSTMSpec's order


def test_cell_given_dicts_converts_them(write_suite):
    cell = load_suite(write_suite(GOOD)).cells[0]
    spec = {**cell.workload.spec.to_dict(), "n_head_kept": 1}
    shrunk = dataclasses.replace(cell, workload={**cell.workload.to_dict(), "spec": spec})
    assert isinstance(shrunk.workload, Workload) and shrunk.workload.spec.n_head_kept == 1
    assert shrunk.to_dict()["workload"]["spec"] == spec and shrunk.hash != cell.hash
    with pytest.raises(ValueError, match="unknown key.*dropout"):
        Cell(**{**cell.to_dict(), "measurement": {**cell.measurement.to_dict(), "dropout": 0.1}})
    with pytest.raises(ValueError, match="lstm spec has no n_head"):
        ModelRef(model="lstm", size="tiny", vocab_size=256, n_head=2)


def test_suite_and_cell_configs_have_the_same_fields():
    from hlbench.suite.schema import Measurement as MeasurementSchema
    from hlbench.suite.schema import Optimizer as OptimizerSchema

    for schema, typed in ((MeasurementSchema, Measurement), (OptimizerSchema, Optimizer)):
        assert list(schema.model_fields) == [f.name for f in dataclasses.fields(typed)]


def test_one_pruning_config_validates_suites_and_reads_cells(write_suite):
    text = GOOD.replace("pruning: [none, magnitude]", "pruning: [none, magnitude, '2:4', grad]")
    text += "pruning: {grad: {method: magnitude, schedule: gradual, end_step: 4}}\n"
    cells = {c.id: c for c in load_suite(write_suite(text)).cells}
    for name in ("magnitude", "2:4", "grad"):  # named without a sparsity: half the weights
        settings = cells[f"gpt-tiny/torch/fp32/ga1/{name}"].techniques["pruning"]
        assert settings["sparsity"] == DEFAULT_SPARSITY == 0.5
        config = PruningConfig.from_dict(settings)  # a cell's dict has every setting
        assert config.model_dump() == settings
    assert PruningConfig.from_dict({"method": "none"}).event_steps(3) == []
    with pytest.raises(UsageError, match=r"pruning\.p\.method: Input should be"):
        load_suite(write_suite(GOOD + "pruning: {p: {method: null}}\n"))


def test_shipped_suites_validate():
    for path in sorted((REPO / "suites").glob("*.yaml")):
        suite = load_suite(path)
        assert suite.cells, path


def test_dry_run_lists_cells(write_suite, capsys):
    assert main(["run", str(write_suite(GOOD)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "gpt-tiny/torch/fp32/ga4/none" in out
    assert "12 cell(s)" in out
    two = GOOD.replace("backends: [torch]", "backends: [torch, tf]").replace(
        "precision: [fp32, bf16]", "precision: [fp32, fp8]"
    )
    assert main(["run", str(write_suite(two)), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("gpt-tiny/tf/fp8/") and "skip: fp8 is not available in TensorFlow" in line
        for line in lines
    )
    assert not any(
        line.startswith("gpt-tiny/torch/fp8/") and "skip" in line for line in lines
    )  # decided on the device


def test_byte_corpus_path_is_relative_to_suite(write_suite, tmp_path):
    (tmp_path / "corpus.txt").write_text("hello world, " * 400)
    suite = load_suite(
        write_suite(
            GOOD.replace(
                "{model: gpt, size: tiny, seq_len: 16, batch_size: 8}",
                "{model: gpt, size: tiny, seq_len: 16, batch_size: 8, "
                "data: {kind: bytes, path: corpus.txt}}",
            )
        )
    )
    data = suite.cells[0].workload.data
    assert data.path == str(tmp_path / "corpus.txt") and len(data.sha256) == 64


# Each bad input: (replace this, with that, expected words in the one-line error).
BAD = {
    "unknown key": ("name: t", "name: t\ncolour: red", ["colour", "unknown key"]),
    "unknown nested key": (
        "batch_size: 4}",
        "batch_size: 4, dropout: 0.1}",
        ["workloads.1.dropout", "unknown key"],
    ),
    "wrong type": (
        "seq_len: 16, batch_size: 8",
        "seq_len: '16', batch_size: 8",
        ["workloads.0.seq_len", "integer"],
    ),
    "out of range": (
        "accumulation: [1, 4]",
        "accumulation: [0, 4]",
        ["axes.accumulation.0", "greater than 0"],
    ),
    "bad float range": (
        "betas: [0.9, 0.99]",
        "betas: [0.9, 1.5]",
        ["optimizer.betas.1", "less than 1"],
    ),
    "duplicate key": ("name: t", "name: t\nname: u", ["duplicate key 'name'", "line 2"]),
    "object tag": (
        "name: t",
        "name: !!python/object/apply:os.system ['true']",
        ["python/object", "not allowed"],
    ),
    "unknown backend": (
        "backends: [torch]",
        "backends: [torch, jax]",
        ["backends", "unknown backend 'jax'", "torch"],
    ),
    "unknown workload model": ("model: lstm", "model: rnn", ["workloads.1.model", "gpt", "lstm"]),
    "unknown size": (
        "size: tiny, seq_len: 16, batch_size: 8",
        "size: huge, seq_len: 16, batch_size: 8",
        ["workloads.0.size", "huge", "tiny"],
    ),
    "unknown precision": (
        "precision: [fp32, bf16]",
        "precision: [fp32, int4]",
        ["axes.precision.1", "fp32", "bf16"],
    ),
    "unknown pruning": (
        "pruning: [none, magnitude]",
        "pruning: [none, random]",
        ["axes.pruning", "'random'", "magnitude"],
    ),
    "unknown augmentation": (
        "pruning: [none, magnitude]",
        "pruning: [none, magnitude]\n  augmentation: [flip]",
        ["axes.augmentation", "'flip'", "token_mask"],
    ),
    "repeated axis value": (
        "accumulation: [1, 4]",
        "accumulation: [1, 1]",
        ["axes.accumulation", "repeated"],
    ),
    "indivisible batch": (
        "accumulation: [1, 4]",
        "accumulation: [1, 3, 4]",
        ["axes.accumulation", "3 steps", "batch_size 8"],
    ),
    "seq_len above context": (
        "seq_len: 16, batch_size: 8",
        "seq_len: 65, batch_size: 8",
        ["workloads.0.seq_len", "65", "context", "64"],
    ),
    "missing data file": (
        "batch_size: 4}",
        "batch_size: 4, data: {kind: bytes, path: nope.txt}}",
        ["workloads.1.data.path", "no such file", "nope.txt"],
    ),
    "bad device": ("name: t", "name: t\ndevice: gpu", ["device", "auto | cpu | cuda"]),
    "exclusion of an absent value": (
        "accumulation: 4}",
        "accumulation: 8}",
        ["exclude.0.accumulation", "8", "not in the suite"],
    ),
    "missing required key": ("backends: [torch]\n", "", ["backends", "required"]),
    "markov vocab above model's": (
        "batch_size: 4}",
        "batch_size: 4, data: {kind: markov, vocab: 999}}",
        ["workloads.1.data.vocab", "999", "256"],
    ),
    "not a mapping": (None, "- just\n- a list\n", ["mapping"]),
    "unparsable yaml": (None, "name: [unclosed\n", ["line"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2(case, write_suite, capsys):
    old, new, words = BAD[case]
    text = new if old is None else GOOD.replace(old, new, 1)
    assert old is None or text != GOOD, "the replacement did not apply"
    path = write_suite(text)
    assert main(["run", str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hlbench: error: {path}"), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def test_bad_input_never_starts_a_run(write_suite, tmp_path, capsys):
    path = write_suite(GOOD.replace("size: tiny, seq_len: 16", "size: tiny, seq_len: 99"))
    assert main(["run", str(path), "--results-dir", str(tmp_path / "results")]) == 2
    assert not (tmp_path / "results").exists()


def test_missing_suite_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read suite file" in capsys.readouterr().err


def test_only_filter(write_suite, capsys):
    assert main(["run", str(write_suite(GOOD)), "--dry-run", "--only", "lstm-*/*/fp32/*/none"]) == 0
    out = capsys.readouterr().out
    assert "1 cell(s)" in out and "lstm-tiny/torch/fp32/ga1/none" in out
    assert main(["run", str(write_suite(GOOD)), "--dry-run", "--only", "nothing*"]) == 2
