"""The TensorFlow backend, imported only in a worker process whose cell names the `tf` backend.

Modules: the adapter (backend: TFBackend, runtime configuration, devices), the single-device
trainer (trainer, with its profile-pass phase breakdown in phases), the loss both trainers share
(losses), Keras models (models), AdamW and loss scaling (optim), tf.distribute strategies
(strategies) and the trainer on mirrored variables (distribute), the profiler pass (trace).
Imports run one way: backend → distribute → strategies, trainer → phases, trace, losses, models,
optim.
"""

import os

# Quieter C++ logging in worker logs. Set here, in the package, because it must precede the first
# `import tensorflow` of any of its modules; users can still override it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
