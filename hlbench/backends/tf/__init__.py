"""The TensorFlow backend: adapter and trainer (backend), Keras models (models), AdamW and loss scaling
(optim), tf.distribute strategies (distribute), the profiler pass (trace). Imported only in a worker
process whose cell names the `tf` backend."""
