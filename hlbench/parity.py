"""Cross-framework parity: the same cell on every backend, from the same weights and batches,
compared.

For one cell definition (workload, precision, accumulation, ...) each backend runs a *probe* in its
own fresh process (`python -m hlbench.parity CELL_JSON OUT_DIR STEPS`, one framework per process):
it reads back the weights it loaded, takes the first step's loss and accumulated gradient without
updating, then trains STEPS AdamW steps on batches 0..STEPS-1 through the backend's own train step
(the one the benchmark times) and evaluates the held-out loss. The parent compares every backend
with the first (the reference) and writes a `kind: parity` record.

Checks and default tolerances (fp32; relative differences, |a - b| / |b|):
- initial_weights: the loaded weights equal the NumPy initial weights exactly (names the tensor);
- initial_loss ≤ 1e-6; grad_norm (global, first step) ≤ 1e-5;
- grad_max_rel: per parameter, max |g_a - g_b| / max |g_b| ≤ 1e-4 (names the worst parameter);
- loss_after_steps: held-out loss after STEPS optimizer steps ≤ 1e-3.
bf16, fp16 and bf16-pure have their own, measured tolerances (TOLERANCES); for bf16-pure the loaded
weights are compared with the NumPy weights rounded to bfloat16
(hlbench.techniques.precision.round_to_storage).
Levels without tolerances (tf32, fp8: GPU only) are skipped.

Test-only hook (hlbench.techniques.test_hooks): HLBENCH_TEST_PARITY_PERTURB="BACKEND:PARAM"
multiplies that parameter's initial weights by 1.001 in that backend's probe, as a weight-loading
bug would.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hlbench.cell import Cell
from hlbench.techniques import precision, test_hooks

DEFAULT_STEPS = 20
PERTURB_ENV = test_hooks.PARITY_PERTURB_ENV
PERTURB_FACTOR = 1.001


@dataclass(frozen=True)
class Tolerances:
    initial_loss: float
    grad_norm: float
    grad_max_rel: float
    loss_after_steps: float


# Per precision level. The reduced levels' tolerances come from measured torch-vs-TF differences on
# gpt-tiny and lstm-tiny (seq 32, batch 8, ga1, seed 0, 20 steps at lr 3e-4, CPU, torch 2.13 /
# TF 2.21), with ~5-10× headroom (worst of the two models):
#   level      initial_loss  grad_norm  grad_max_rel  loss_after_20
#   bf16       1.4e-5        5.5e-5     1.1e-2        1.4e-5
#   fp16       7.7e-7        3.0e-5     1.7e-3        2.7e-6
#   bf16-pure  1.5e-5        1.3e-4     4.5e-2        4.5e-5
# (fp32 measured 1.7e-7, 1.4e-8, 1.0e-6, 0.) The remaining differences are roundings the two
# frameworks place differently (e.g. torch adds the bias inside its bf16 GEMM, TF after it; torch's
# attention keeps the scores in fp32 before the softmax, TF rounds them to the compute dtype first).
# Those were measured on a CPU with AVX-512 BF16, whose native bf16 dot products both frameworks
# use. On a CPU without it (an AVX2 EPYC) the bf16 GEMMs are emulated, each framework rounding its
# own way, and gpt-tiny's gradient norm differed by 4.4e-3 (bf16) and 4.3e-3 (bf16-pure):
# about one bf16 ulp (2^-8 = 3.9e-3), the precision bf16 itself keeps. The bf16 levels' grad_norm
# tolerance is therefore 1e-2, two to three ulps, not a figure only one kind of CPU meets.
# tf32 and fp8 run only on GPUs (and fp8 only in PyTorch): no cross-framework tolerance here.
TOLERANCES: dict[str, Tolerances] = {
    "fp32": Tolerances(initial_loss=1e-6, grad_norm=1e-5, grad_max_rel=1e-4, loss_after_steps=1e-3),
    "bf16": Tolerances(initial_loss=2e-4, grad_norm=1e-2, grad_max_rel=5e-2, loss_after_steps=5e-4),
    "fp16": Tolerances(initial_loss=2e-5, grad_norm=3e-4, grad_max_rel=1e-2, loss_after_steps=1e-4),
    "bf16-pure": Tolerances(
        initial_loss=2e-4, grad_norm=1e-2, grad_max_rel=1.5e-1, loss_after_steps=5e-4
    ),
}


@dataclass
class Probe:
    backend: str
    weights_max_abs_diff: dict[str, float]  # per parameter: max |loaded - NumPy initial|
    initial_loss: float
    grads: dict[str, np.ndarray]
    train_losses: list[float]
    loss_after_steps: float

    @property
    def grad_norm(self) -> float:
        return math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in self.grads.values()))


# ------------------------------------------------------- probe side (one framework per process)


def probe(cell: Cell, backend: Any, steps: int) -> Probe:
    """Run the parity probe of `cell` on `backend` in this process."""
    from hlbench.worker.inputs import corpus_for, eval_batches, train_batches
    from hlbench.workloads import model_spec

    spec = model_spec(cell)
    initial = spec.init_weights(cell.seed)
    weights = {k: v.copy() for k, v in initial.items()}
    # what a correct backend holds after loading: the weights rounded to the level's storage dtype
    # (bf16-pure: round to nearest even, as both frameworks' casts do; fp32: exactly the NumPy
    # arrays)
    stored = precision.level(cell.axes["precision"]).param
    reference = {k: precision.round_to_storage(v, stored) for k, v in initial.items()}
    perturb = test_hooks.parity_perturb()
    if perturb is not None and perturb[0] == cell.backend:
        param = perturb[1]
        weights[param] = weights[param] * np.float32(PERTURB_FACTOR)
    corpus = corpus_for(cell)
    batches = train_batches(cell, corpus, max(steps, 1))
    held_out = eval_batches(cell, corpus) or [batches[0]]

    trainer = backend.build(cell, spec, precision.level(cell.axes["precision"]), weights)
    loaded = trainer.weights()
    diffs = {
        n: float(np.max(np.abs(loaded[n].astype(np.float64) - reference[n]))) for n in reference
    }
    initial_loss, grads = trainer.gradients(batches[0])
    losses = [trainer.train_step(b) for b in batches[:steps]]
    trainer.sync()
    return Probe(
        cell.backend,
        diffs,
        initial_loss,
        grads,
        trainer.losses_to_floats(losses),
        trainer.eval_loss(held_out),
    )


def _save(p: Probe, out_dir: Path) -> None:
    np.savez(out_dir / "grads.npz", **p.grads)
    meta = {
        k: getattr(p, k)
        for k in (
            "backend",
            "weights_max_abs_diff",
            "initial_loss",
            "train_losses",
            "loss_after_steps",
        )
    }
    (out_dir / "probe.json").write_text(json.dumps(meta))


def _load(out_dir: Path) -> Probe:
    meta = json.loads((out_dir / "probe.json").read_text())
    with np.load(out_dir / "grads.npz") as npz:
        grads = {k: npz[k] for k in npz.files}
    return Probe(grads=grads, **meta)


def main(argv: list[str]) -> int:
    from hlbench.backends import get_spec, load_adapter

    cell_json, out_dir, steps = argv
    cell = Cell.from_dict(json.loads(Path(cell_json).read_text()))
    _save(probe(cell, load_adapter(get_spec(cell.backend)), int(steps)), Path(out_dir))
    return 0


# ---------------------------------------------------------------- parent side


def run_probe(cell: Cell, steps: int, log_path: Path) -> Probe:
    """The probe of `cell` in a fresh worker process; raises RuntimeError with the log's tail on
    failure."""
    with tempfile.TemporaryDirectory(prefix="hlbench-parity-") as tmp:
        cell_json = Path(tmp) / "cell.json"
        cell_json.write_text(json.dumps(cell.to_dict()))
        with open(log_path, "wb") as log:
            proc = subprocess.run(
                [sys.executable, "-m", "hlbench.parity", str(cell_json), tmp, str(steps)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=cell.measurement.timeout_s,
            )
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(
                f"{cell.backend} probe exited with {proc.returncode}: {tail[0]} (log: {log_path})"
            )
        return _load(Path(tmp))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a - b)


def _check(
    name: str, values: dict[str, float], rel_diff: float, tolerance: float, detail: str
) -> dict[str, Any]:
    return {
        "name": name,
        "values": values,
        "rel_diff": rel_diff,
        "tolerance": tolerance,
        "passed": bool(rel_diff <= tolerance),
        "detail": detail,
    }


def _weights_check(probes: list[Probe]) -> dict[str, Any]:
    """Each backend's loaded weights against the NumPy initial weights: exact, naming the worst
    tensor."""
    worst = {
        p.backend: max(p.weights_max_abs_diff.items(), key=lambda item: item[1]) for p in probes
    }
    wrong = {backend: (name, diff) for backend, (name, diff) in worst.items() if diff > 0}
    detail = "; ".join(
        f"{b} loaded {n} differently from the NumPy initial weights (max abs diff {d:.3g})"
        for b, (n, d) in wrong.items()
    )
    return _check(
        "initial_weights",
        {b: d for b, (_, d) in worst.items()},
        max((d for _, d in wrong.values()), default=0.0),
        0.0,
        detail or "every backend loaded exactly the NumPy initial weights",
    )


def compare(probes: list[Probe], tol: Tolerances, steps: int) -> list[dict[str, Any]]:
    """The checks of every probe against the first; each check's rel_diff is the worst over
    backends."""
    ref, others = probes[0], probes[1:]
    checks = []

    checks.append(_weights_check(probes))
    for name, get, t in (
        ("initial_loss", lambda p: p.initial_loss, tol.initial_loss),
        ("grad_norm", lambda p: p.grad_norm, tol.grad_norm),
        (f"loss_after_{steps}_steps", lambda p: p.loss_after_steps, tol.loss_after_steps),
    ):
        diffs = {p.backend: _rel(get(p), get(ref)) for p in others}
        worst = max(diffs, key=diffs.get)
        checks.append(
            _check(
                name,
                {p.backend: get(p) for p in probes},
                diffs[worst],
                t,
                f"{worst} vs {ref.backend}: relative difference {diffs[worst]:.3g}",
            )
        )

    worst_param, worst_rel, worst_backend = "", 0.0, others[0].backend
    for p in others:
        for n, g_ref in ref.grads.items():
            scale = float(np.max(np.abs(g_ref))) or 1.0
            rel = float(np.max(np.abs(p.grads[n].astype(np.float64) - g_ref))) / scale
            if rel >= worst_rel:
                worst_param, worst_rel, worst_backend = n, rel, p.backend
    checks.append(
        _check(
            "grad_max_rel",
            {"parameter": worst_param},
            worst_rel,
            tol.grad_max_rel,
            f"worst parameter {worst_param} ({worst_backend} vs {ref.backend}): "
            f"max |Δg| / max |g| = {worst_rel:.3g}",
        )
    )
    return checks


def parity_record(
    cells: list[Cell],
    probes: list[Probe],
    checks: list[dict[str, Any]],
    steps: int,
    run_id: str,
    suite: str,
    env: dict[str, Any],
) -> dict[str, Any]:
    from hlbench.records import SCHEMA_VERSION

    first = cells[0]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "parity",
        "run_id": run_id,
        "suite": suite,
        "workload": first.workload.name,
        "precision": first.axes["precision"],
        "axes": first.axes,
        "backends": [c.backend for c in cells],
        "cell_ids": [c.id for c in cells],
        "cell_hashes": [c.hash for c in cells],
        "steps": steps,
        "passed": all(c["passed"] for c in checks),
        "checks": checks,
        "train_losses": {p.backend: p.train_losses for p in probes},
        "env": env,
    }


def groups(cells: list[Cell]) -> list[list[Cell]]:
    """Cells that differ only in their backend, in suite order; groups with one backend are
    dropped."""
    by_key: dict[str, list[Cell]] = {}
    for cell in cells:
        key = json.dumps({**cell.to_dict(), "backend": None}, sort_keys=True)
        by_key.setdefault(key, []).append(cell)
    return [g for g in by_key.values() if len(g) >= 2]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
