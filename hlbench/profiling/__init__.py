"""Profiling (issue 9): a separate pass per cell, after the measured windows and the eval, so its
synchronizations and tracers never perturb the headline numbers. phases.py times the phases of a step,
categories.py maps operator names to categories, torch_trace.py / tf_trace.py drive the frameworks'
profilers (imported only by the worker's backend)."""

PROFILE_DIR_ENV = "HLBENCH_PROFILE_DIR"  # set by the runner for a worker when profiling is on
