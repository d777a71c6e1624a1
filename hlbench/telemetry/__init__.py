"""Telemetry beside the training: NVML device figures, host figures, their alignment to the measured
windows, and the derived metrics (peaks, mean power, energy per token, throttling, MFU).

The samplers run in the parent process (hlbench.sweep.runner), on a thread that sleeps between
samples, so the worker's timed loop never executes a line of telemetry code. Every figure is
labelled with what it measures; a figure that cannot be had is null with the reason in
`telemetry.status`.
"""
