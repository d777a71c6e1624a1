"""Structured and 2:4 masks computed with each framework's own ops on its own tensors equal the
NumPy reference's exactly (hlbench.techniques.pruning), on random weights and on weights whose
units or groups tie exactly; and a trainer's device event leaves exactly the reference's zeros,
which stay zero through training."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from hlbench.backends.tf import prune as tf_prune  # noqa: E402
from hlbench.backends.tf.backend import TFBackend  # noqa: E402
from hlbench.backends.torch import prune as torch_prune  # noqa: E402
from hlbench.backends.torch.backend import TorchBackend  # noqa: E402
from hlbench.suite import load_suite  # noqa: E402
from hlbench.techniques import pruning as P  # noqa: E402
from hlbench.workloads import get_spec  # noqa: E402
from tests.helpers import build_trainer, suite_yaml  # noqa: E402

SPECS = {model: get_spec(model, "tiny") for model in ("gpt", "llama")}
SPARSITIES = [0.25, 0.5, 0.9]  # 0.9 of 2 heads rounds to 2: one is kept all the same


def _random_units(spec, rng) -> dict[int, dict[str, np.ndarray]]:
    """A random keep pattern per layer, in the reference's units format."""
    units, shapes = {}, spec.param_shapes()
    for i in range(spec.n_layer):
        if spec.model == "gpt":
            units[i] = {
                "heads": rng.random(spec.n_head) < 0.5,
                "neurons": rng.random(shapes["h.0.mlp.c_fc.w"][1]) < 0.5,
            }
        else:
            groups = rng.random(spec.n_kv_head) < 0.5
            units[i] = {
                "heads": np.repeat(groups, spec.group_size),
                "kv_heads": groups,
                "neurons": rng.random(shapes["h.0.mlp.gate_proj.w"][1]) < 0.5,
            }
    return units


def _weights(spec, ties: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """The spec's initial weights, or (ties) every weight ±0.25, doubled on one random set of units
    and zeroed on another: each unit's score is then 0, c or 4c exactly (float64 sums of these are
    exact in any order), so many units tie and the tie rule decides."""
    weights = spec.init_weights(seed)
    if not ties:
        return weights
    rng = np.random.default_rng(seed)
    doubled = P.structured_masks(spec, _random_units(spec, rng))
    zeroed = P.structured_masks(spec, _random_units(spec, rng))
    out = {}
    for n, w in weights.items():
        w = np.where(rng.random(w.shape) < 0.5, -0.25, 0.25).astype(np.float32)
        if n in doubled:
            w = w * (1 + doubled[n]) * ~zeroed[n]
        out[n] = w.astype(np.float32)
    return out


def _torch_views(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """As the torch trainer holds them: kernels stored (out, in), seen as transposed views."""
    return {
        n: torch.from_numpy(w.T.copy()).t() if w.ndim == 2 else torch.from_numpy(w.copy())
        for n, w in weights.items()
    }


def _device_masks(backend: str, spec, weights, sparsity) -> dict[str, np.ndarray]:
    if backend == "torch":
        views = _torch_views(weights)
        keeps = torch_prune.structured_keeps(spec, views.__getitem__, sparsity)
    else:
        variables = {n: tf.Variable(w) for n, w in weights.items()}
        keeps = tf_prune.structured_keeps(spec, variables.__getitem__, sparsity)
    return {n: np.asarray(keep.numpy()) for n, keep in keeps}


@pytest.mark.parametrize("backend", ["torch", "tf"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("model", ["gpt", "llama"])
def test_structured_masks_on_the_device_equal_the_numpy_reference(backend, ties, model):
    spec = SPECS[model]
    weights = _weights(spec, ties)
    for sparsity in SPARSITIES:
        expected = P.structured_masks(spec, P.structured_units(spec, weights, sparsity))
        got = _device_masks(backend, spec, weights, sparsity)
        assert got.keys() == expected.keys()
        for n, mask in expected.items():
            assert got[n].dtype == bool and np.array_equal(got[n], mask), (sparsity, n)


@pytest.mark.parametrize("model", ["gpt", "llama"])
def test_the_reference_prunes_the_lowest_indices_among_equal_scores(model):
    """Every weight ±0.25: all units of a kind tie, so the first k are the ones pruned."""
    spec = SPECS[model]
    weights = {n: np.full(w.shape, 0.25, np.float32) for n, w in spec.init_weights(0).items()}
    for n in weights:
        weights[n][..., ::3] *= -1  # signs do not matter
    units = P.structured_units(spec, weights, 0.5)
    for keep in units.values():
        for kind in ("kv_heads" if model == "llama" else "heads", "neurons"):
            count = keep[kind].size
            k = round(0.5 * count)
            assert keep[kind].tolist() == [False] * k + [True] * (count - k), kind
    for backend in ("torch", "tf"):
        got = _device_masks(backend, spec, weights, 0.5)
        for n, mask in P.structured_masks(spec, units).items():
            assert np.array_equal(got[n], mask), (backend, n)


def _n_m_weights(spec, ties: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    weights = spec.init_weights(1)
    if ties:  # |w| in {0, 0.5, 1}: most groups of 4 hold equal magnitudes, signs differing
        weights = {
            n: (rng.integers(-2, 3, size=w.shape) * 0.5).astype(np.float32)
            for n, w in weights.items()
        }
    return {n: weights[n] for n in P.prunable(spec)}


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("model", ["gpt", "llama"])
def test_n_m_masks_on_the_device_equal_the_numpy_reference(ties, model):
    spec = SPECS[model]
    weights = _n_m_weights(spec, ties)
    expected = P.n_m_masks(weights, list(weights))
    views = _torch_views(weights)
    for n, mask in expected.items():
        assert np.array_equal(torch_prune.n_m_keep(n, views[n]).numpy(), mask), n
        assert np.array_equal(tf_prune.n_m_keep(n, tf.Variable(weights[n])).numpy(), mask), n
    if ties:  # the tie case does tie: a group whose 4 magnitudes are all equal
        first = next(iter(weights.values()))
        groups = np.abs(first).reshape(-1, 4, first.shape[1])
        assert (groups.min(axis=1) == groups.max(axis=1)).any()


def test_n_m_on_a_kernel_whose_inputs_are_not_a_multiple_of_4_is_refused():
    w = np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match="x.w has 6 inputs, not a multiple of 4"):
        torch_prune.n_m_keep("x.w", torch.from_numpy(w))
    with pytest.raises(ValueError, match="x.w has 6 inputs, not a multiple of 4"):
        tf_prune.n_m_keep("x.w", tf.constant(w))


BACKENDS = {"torch": TorchBackend, "tf": TFBackend}


def _no_host_copy() -> None:
    raise AssertionError("a pruning event copied the weights to the host")


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    text = suite_yaml(
        backends=["torch", "tf"],
        workloads=[
            {"model": "gpt", "size": "tiny", "seq_len": 16, "batch_size": 4},
            {"model": "llama", "size": "tiny", "seq_len": 16, "batch_size": 4},
        ],
        axes={"pruning": ["structured", "2:4"]},
        pruning={"structured": {"sparsity": 0.5}},
    )
    path = tmp_path_factory.mktemp("device") / "suite.yaml"
    path.write_text(text)
    return {c.id: c for c in load_suite(path).cells}


@pytest.mark.parametrize("backend", ["torch", "tf"])
@pytest.mark.parametrize(
    "model,method", [("gpt", "structured"), ("llama", "structured"), ("gpt", "2:4")]
)
def test_a_trainers_device_event_zeroes_the_reference_masks_and_they_stay_zero(
    cells, backend, model, method
):
    """Through the trainer's own prune_* (what the driver calls), then three AdamW steps with
    weight decay: exactly the reference's pruned weights are zero."""
    from hlbench.worker.inputs import corpus_for, train_batches

    cell = cells[f"{model}-tiny/{backend}/fp32/ga1/{method}"]
    spec = SPECS[model]
    weights = _weights(spec, ties=False, seed=3)
    trainer = build_trainer(BACKENDS[backend](), cell, weights)
    host_copy = trainer.weights
    trainer.weights = _no_host_copy  # the event must not read the weights back
    if method == "structured":
        masks = P.structured_masks(spec, P.structured_units(spec, weights, 0.5))
        trainer.prune_structured(spec, 0.5)
    else:
        masks = P.n_m_masks(weights, P.prunable(spec))
        trainer.prune_n_m(P.prunable(spec))
    trainer.weights = host_copy
    for batch in train_batches(cell, corpus_for(cell), 3):
        trainer.train_step(batch)
    after = trainer.weights()
    for n, mask in masks.items():
        assert (after[n][~mask] == 0).all(), n
        assert (after[n][mask] != 0).mean() > 0.9, n  # the kept ones still train
