#!/usr/bin/env python
"""hlbench's overhead on CUDA: benchmarks/overhead.py (hlbench's run_cell against a bare loop) on
the torch gpt-small and gpt2-124m cells, fp32, on the first GPU; then one line per size.

On CUDA hlbench times each step with a CUDA event and syncs once per window
(hlbench.backends.torch.timing), so the ratio hlbench / bare should be ≥ 0.99 there as on a CPU;
before that change it synced after every step. Prepared without a GPU: on a machine without a CUDA
device it says so and exits 0, measuring nothing.

    python benchmarks/gpu_overhead.py                 # 7 trials of 20 steps per size
    python benchmarks/gpu_overhead.py --trials 11 --steps 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# (size, seq_len, batch_size): gpt-small as overhead.py's default cell, gpt2-124m at its context
SIZES = [("small", 128, 16), ("gpt2-124m", 1024, 8)]
NO_CUDA = (
    "gpu_overhead.py: no CUDA device (PyTorch sees none, or is not installed): nothing measured; "
    "run it on a machine with an NVIDIA GPU and a CUDA build of PyTorch"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=7, help="A/B trials per size (default: 7)")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per trial (20)")
    parser.add_argument("--device", default="cuda", help="cuda[:N] (default: cuda)")
    return parser.parse_args(argv)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not cuda_available():
        print(NO_CUDA, file=sys.stderr)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import overhead

    rows, status = [], 0
    for size, seq_len, batch in SIZES:
        print(f"=== gpt-{size}, seq {seq_len}, batch {batch} ===", flush=True)
        rc, median_ratio, ratio_of_medians = overhead.run(
            [
                *("--device", args.device, "--size", size, "--seq-len", str(seq_len)),
                *("--batch-size", str(batch), "--trials", str(args.trials)),
                *("--steps", str(args.steps)),
            ]
        )
        rows.append((size, median_ratio, ratio_of_medians))
        status = max(status, rc)
        print()
    for size, median_ratio, ratio_of_medians in rows:
        if median_ratio is None or ratio_of_medians is None:
            print(f"gpt-{size:<10} not measured (see its error above)")
            continue
        print(
            f"gpt-{size:<10} ratio of medians {ratio_of_medians:.3f}, "
            f"median per-trial ratio {median_ratio:.3f} (target ≥ {overhead.TARGET})"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
