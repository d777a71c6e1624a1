"""The PyTorch backend: adapter and trainer (backend), the GPT/LSTM modules (models), the profiler
pass (trace). Imported only in a worker process whose cell names the `torch` backend."""
