#!/usr/bin/env bash
# Run the GPU telemetry suite (NVML on) and report it; records, raw samples and the report are copied
# under reports/gpu-telemetry-<date>/ for committing. Needs an NVIDIA GPU, PyTorch with CUDA and
# nvidia-ml-py. Never changes clocks, power limits or modes: it only reads.
set -euo pipefail
cd "$(dirname "$0")/.."
out="reports/gpu-telemetry-$(date -u +%Y%m%d)"
mkdir -p "$out"
hlbench env > "$out/env.json"
python -c "import json,sys; e=json.load(open('$out/env.json')); sys.exit(0 if e['nvml']['available'] else 'NVML is not available: ' + e['nvml']['reason'])"
hlbench run suites/gpu-telemetry.yaml --quiet --results-dir "$out/results" || echo "some cells failed (see the report)"
records=$(ls -t "$out"/results/gpu-telemetry/*.jsonl | head -1)
hlbench report "$records" -o "$out/report.md"
hlbench table "$records" --format md > "$out/table.md"
echo "wrote $out (records, samples, report)"
