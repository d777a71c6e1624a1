"""Profiling: a separate pass per cell, after the measured windows and the eval, so its
synchronizations and tracers never perturb the headline numbers. phases.py times the phases of a
step, categories.py maps operator names to categories, each backend's trace module
(hlbench.backends.torch.trace,
hlbench.backends.tf.trace) drives its framework's profiler."""
