"""The parent side of a run: plan the cells, start one fresh worker process (or one process group)
per cell and repeat, watch it with a timeout and telemetry, blame failures, append one record each.
Nothing here imports a framework or the worker package."""
