"""The PyTorch backend: the adapter (backend), the trainer (trainer) and its parts: precision setup
(amp), the first step's dtype check (observe), AdamW (optim), data parallel (distribute), the device
and its facts (device); the GPT/LSTM modules (models), the profiler pass (trace) and the CPU GEMM
calibration (calibrate). Imported only in a worker process whose cell names the `torch` backend (and
calibrate by hlbench.telemetry.peaks, in such a worker)."""
