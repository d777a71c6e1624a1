#!/usr/bin/env bash
# The PyTorch precision axis on a GPU machine: suites/gpu-precision.yaml (gpt-medium; fp32, tf32, bf16,
# fp16, bf16-pure, fp8; eager and torch.compile), then a markdown report with tokens/s, loss and
# memory per level, and the records' proof of what ran (backend_info.dtypes, loss scale).
#
#   benchmarks/gpu_precision.sh                      # all cells, report under reports/
#   benchmarks/gpu_precision.sh --only '*/fp8/*'     # extra arguments go to `hlbench run`
#
# Needs: PyTorch with CUDA, hlbench installed (pip install -e ".[torch]"); torchao for fp8
# (pip install torchao; without it the fp8 cells are skipped with that reason). Exit status: that of
# `hlbench run` (1 if a cell failed; the report is written either way), 2 without a CUDA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${SUITE:-suites/gpu-precision.yaml}
RESULTS_DIR=${RESULTS_DIR:-results}

if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_precision.sh: PyTorch sees no CUDA GPU here; nothing to measure" >&2
    exit 2
fi
python -c 'import torch; i = torch.cuda.current_device(); print("GPU:", torch.cuda.get_device_name(i), "compute capability", torch.cuda.get_device_capability(i))'
python -c 'import torchao' 2>/dev/null || echo "note: torchao is not installed: fp8 cells will be skipped" >&2

status=0
python -m hlbench run "$SUITE" --results-dir "$RESULTS_DIR" "$@" || status=$?
if [ "$status" -ge 2 ]; then exit "$status"; fi   # bad suite/arguments or interrupted: no records to report

records=$(ls -t "$RESULTS_DIR"/gpu-precision/*.jsonl | head -n 1)
mkdir -p reports
report="reports/gpu-precision-$(basename "$records" .jsonl).md"
python -m hlbench report "$records" -o "$report"
python -m hlbench table "$records" --pivot workload,compile:precision
echo "records: $records"
echo "report:  $report"
exit "$status"
