"""Pruning in both backends: achieved sparsity, zeros that stay zero, masks equal across frameworks,
gradual schedules, and a shrunk model that computes what the masked one does."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from hlbench.backends.tf.backend import TFBackend  # noqa: E402
from hlbench.backends.torch.backend import TorchBackend  # noqa: E402
from hlbench.errors import SkipCell  # noqa: E402
from hlbench.suite import load_suite  # noqa: E402
from hlbench.techniques import pruning as P  # noqa: E402
from hlbench.techniques.driver import PruningRun  # noqa: E402
from hlbench.worker.inputs import corpus_for, train_batches  # noqa: E402
from hlbench.worker.train import run_cell  # noqa: E402
from hlbench.workloads import model_spec  # noqa: E402
from tests.helpers import build_trainer, suite_yaml  # noqa: E402

BACKENDS = {"torch": TorchBackend, "tf": TFBackend}
SUITE = suite_yaml(
    backends=["torch", "tf"],
    device="cpu",
    workloads=[
        {"model": "gpt", "size": "tiny", "seq_len": 16, "batch_size": 4},
        {"model": "lstm", "size": "tiny", "seq_len": 16, "batch_size": 4},
    ],
    axes={"pruning": ["magnitude", "structured", "2:4", "gradual", "structured-shrink"]},
    pruning={
        "magnitude": {"sparsity": 0.6},
        "structured": {"sparsity": 0.5},
        "gradual": {
            "method": "magnitude",
            "sparsity": 0.8,
            "schedule": "gradual",
            "start_step": 0,
            "end_step": 6,
            "every_steps": 2,
        },
        "structured-shrink": {"method": "structured", "sparsity": 0.5, "shrink": True},
    },
    measurement={"warmup_steps": 2, "steps": 3, "windows": 2, "eval_batches": 1},
)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    path = tmp_path_factory.mktemp("pruning") / "suite.yaml"
    path.write_text(SUITE)
    return {c.id: c for c in load_suite(path).cells}


@pytest.mark.parametrize("backend", ["torch", "tf"])
@pytest.mark.parametrize(
    "model,name,target",
    [
        ("gpt", "magnitude", 0.6),
        ("gpt", "structured", 0.5),
        ("gpt", "2:4", 0.5),
        ("gpt", "gradual", 0.8),
        ("lstm", "magnitude", 0.6),
        ("lstm", "2:4", 0.5),
    ],
)
def test_sparsity_reaches_the_target_and_pruned_weights_stay_zero(
    cells, backend, model, name, target
):
    cell = cells[f"{model}-tiny/{backend}/fp32/ga1/{name}"]
    result = run_cell(cell, BACKENDS[backend]())
    report = result["backend_info"]["pruning"]
    # measured on the final weights: exact zeros after 8 AdamW steps with weight decay
    assert report["sparsity_global"] == pytest.approx(target, abs=0.005)
    assert report["n_params_nonzero"] < report["n_params"] == report["n_params_before"]
    if name == "2:4":
        assert report["n_m_holds"] is True
    assert result["loss"]["train_loss_per_step"][-1] < result["loss"]["train_loss_per_step"][0]


def test_structured_pruning_of_the_lstm_is_skipped_with_a_reason(cells):
    with pytest.raises(SkipCell, match="neither"):
        run_cell(cells["lstm-tiny/torch/fp32/ga1/structured"], TorchBackend())


@pytest.mark.parametrize("name", ["magnitude", "structured", "2:4"])
def test_masks_are_equal_across_frameworks(cells, name):
    masks = {}
    for backend in ("torch", "tf"):
        cell = cells[f"gpt-tiny/{backend}/fp32/ga1/{name}"]
        spec = model_spec(cell)
        trainer = build_trainer(BACKENDS[backend](), cell)
        config = P.PruningConfig.from_dict(cell.techniques["pruning"])
        masks[backend] = P.compute_masks(spec, trainer.weights(), config, config.sparsity)
    assert masks["torch"].keys() == masks["tf"].keys()
    for n in masks["torch"]:
        assert np.array_equal(masks["torch"][n], masks["tf"][n]), n


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_moments_and_decay_keep_pruned_weights_exactly_zero_after_a_late_event(cells, backend):
    """Pruning after some AdamW steps (non-zero moments): the pruned weights must still stay 0."""
    cell = cells[f"gpt-tiny/{backend}/fp32/ga1/magnitude"]
    spec = model_spec(cell)
    trainer = build_trainer(BACKENDS[backend](), cell)
    batches = train_batches(cell, corpus_for(cell), 6)
    for b in batches[:3]:
        trainer.train_step(b)
    masks = P.magnitude_masks(trainer.weights(), P.prunable(spec), 0.6)
    trainer.apply_masks(masks)
    for b in batches[3:]:
        trainer.train_step(b)
    weights = trainer.weights()
    for n, m in masks.items():
        assert (weights[n][~m] == 0).all(), n
        assert (weights[n][m] != 0).mean() > 0.99, n  # the kept ones still train


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_shrunk_model_has_fewer_parameters_and_the_masked_models_loss(cells, backend):
    shrunk = cells[f"gpt-tiny/{backend}/fp32/ga1/structured-shrink"]
    masked = cells[f"gpt-tiny/{backend}/fp32/ga1/structured"]
    spec = model_spec(masked)
    batch = train_batches(masked, corpus_for(masked), 1)[0]

    run = PruningRun(shrunk, spec)
    small_cell, small_spec, small_weights = run.prepare(shrunk, spec.init_weights(shrunk.seed))
    assert small_spec.n_params == sum(w.size for w in small_weights.values()) < spec.n_params
    assert run.shapes == {"n_head_kept": 1, "d_mlp_kept": 128, "d_head": 32}
    loss_small, _ = build_trainer(BACKENDS[backend](), small_cell, small_weights).gradients(batch)

    trainer = build_trainer(BACKENDS[backend](), masked)
    config = P.PruningConfig.from_dict(masked.techniques["pruning"])
    trainer.apply_masks(P.compute_masks(spec, trainer.weights(), config, config.sparsity))
    loss_masked, _ = trainer.gradients(batch)
    assert loss_small == pytest.approx(loss_masked, rel=1e-6)

    record = run_cell(shrunk, BACKENDS[backend]())
    assert record["backend_info"]["n_params"] == small_spec.n_params
    assert record["backend_info"]["pruning"]["shrink_shapes"]["n_head_kept"] == 1
    assert record["backend_info"]["pruning"]["sparsity_global"] == pytest.approx(
        0.5
    )  # half the kernels removed
    assert record["backend_info"]["flops_per_token"] < spec.flops_per_token(16)
