"""hlbench: benchmarking and profiling for language-model training.

`import hlbench` imports no framework: PyTorch and TensorFlow are loaded only by the worker process
that trains a cell (see hlbench.backends).
"""

__version__ = "0.1.0"
