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


def _tied_weights() -> dict[str, np.ndarray]:
    """Kernels whose |w| take few distinct values, so many weights tie at the threshold."""
    rng = np.random.default_rng(0)
    shapes = {"a.w": (6, 10), "b.w": (10, 4), "c.w": (4, 8)}
    return {n: (rng.integers(-3, 4, size=s) * 0.25).astype(np.float32) for n, s in shapes.items()}


def _argsort_masks(weights, names, sparsity):
    """The reference rule: a stable argsort of |w| over the concatenation, the k first pruned."""
    flat = np.concatenate([np.abs(weights[n]).ravel() for n in names])
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: int(round(sparsity * flat.size))]] = False
    return np.split(keep, np.cumsum([weights[n].size for n in names])[:-1])


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.8, 0.99])
def test_magnitude_masks_on_every_path_match_the_stable_argsort_rule_ties_included(sparsity):
    from hlbench.backends.tf.prune import magnitude_keep as tf_keep
    from hlbench.backends.torch.prune import magnitude_keep as torch_keep

    weights, names = _tied_weights(), ["a.w", "b.w", "c.w"]
    expected = _argsort_masks(weights, names, sparsity)
    numpy_masks = P.magnitude_masks(weights, names, sparsity)
    # torch holds linear kernels transposed: a transposed view must select in the neutral order
    torch_views = [torch.from_numpy(weights[n].T.copy()).t() for n in names]
    torch_masks = torch_keep(torch_views, sparsity)
    tf_masks = tf_keep([tf.constant(weights[n]) for n in names], sparsity)
    for i, n in enumerate(names):
        want = expected[i].reshape(weights[n].shape)
        assert np.array_equal(numpy_masks[n], want), n
        assert np.array_equal(torch_masks[i].numpy(), want), n
        assert np.array_equal(tf_masks[i].numpy(), want), n


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_a_slow_pruning_event_is_recorded_apart_and_in_no_step_time(cells, backend, monkeypatch):
    delay_s = 1.5  # far above a gpt-tiny step, even on a busy machine
    monkeypatch.setenv("HLBENCH_TEST_PRUNE_EVENT_DELAY_S", str(delay_s))
    result = run_cell(cells[f"gpt-tiny/{backend}/fp32/ga1/gradual"], BACKENDS[backend]())
    timing = result["timing"]
    events = timing["technique_events"]
    assert [e["step"] for e in events] == [0, 2, 4, 6]  # warmup 0-1, measured 2-7
    assert all(e["technique"] == "pruning" and e["s"] >= delay_s for e in events)
    # the first warmup step traces the TensorFlow step (seconds): the other one and every measured
    steps = timing["warmup_step_times_s"][1:] + [
        t for w in timing["window_step_times_s"] for t in w
    ]
    assert max(steps) < delay_s, steps
    # each window holds an event (before steps 4 and 6): its time is not in the window's either
    walls = timing["window_wall_s"]
    assert all(
        abs(wall - sum(w)) < 0.01 * wall for wall, w in zip(walls, timing["window_step_times_s"])
    )
    assert result["backend_info"]["pruning"]["sparsity_global"] == pytest.approx(0.8, abs=0.005)
