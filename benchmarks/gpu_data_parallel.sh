#!/usr/bin/env bash
# Data parallel on this machine's GPUs (not yet run: the sessions that built hlbench had no GPU).
# 1. torchrun DDP and FSDP2 over all N GPUs (NCCL; with N = 1 this still exercises the process group,
#    cuda:LOCAL_RANK and the per-GPU telemetry), against the same cells on one GPU, through
#    benchmarks/data_parallel.py; 2. the single-GPU cells again with --devices over all N GPUs.
# Records and a report go under reports/gpu-data-parallel-<date>/. Needs PyTorch with CUDA and
# nvidia-ml-py; TensorFlow cells are left out (add tf to `backends` where tensorflow[and-cuda] is installed).
# Never changes clocks, power limits or modes: it only reads.
set -euo pipefail
cd "$(dirname "$0")/.."
n=$(python -c "from hlbench.telemetry.nvml import gpu_count; print(gpu_count())")
[ "$n" -ge 1 ] || { echo "gpu_data_parallel.sh: NVML sees no GPU" >&2; exit 2; }
out="reports/gpu-data-parallel-$(date -u +%Y%m%d)"
mkdir -p "$out"
cat > "$out/suite.yaml" <<YAML
name: gpu-data-parallel
device: cuda
backends: [torch]
workloads:
  - {model: gpt, size: medium, seq_len: 512, batch_size: $((8 * n))}
axes: {precision: [bf16], accumulation: [1, 2]}
launcher: {nproc_per_node: $n, port: 29555}
measurement: {warmup_steps: 10, steps: 20, windows: 3, budget_s: 60, timeout_s: 600, eval_batches: 2}
YAML
python benchmarks/data_parallel.py "$out/suite.yaml" --torch ddp,fsdp --results-dir "$out/results" | tee "$out/scaling.txt"
python - "$out" <<'PY'
import sys, yaml
out = sys.argv[1]
suite = yaml.safe_load(open(f"{out}/suite.yaml"))
suite.pop("launcher")
suite["name"] = "gpu-devices"
yaml.safe_dump(suite, open(f"{out}/devices.yaml", "w"), sort_keys=False)
PY
hlbench run "$out/devices.yaml" --quiet --devices "$(seq -s, 0 $((n - 1)))" --results-dir "$out/results" || echo "some cells failed (see the report)"
hlbench report "$out"/results/*/*.jsonl -o "$out/report.md"
echo "wrote $out (records, samples, scaling.txt, report)"
