"""Results where teams already look: MLflow runs (`to_mlflow`), TensorBoard event files
(`to_tensorboard`) and JUnit XML of a comparison (`to_junit`), over the records `source` reads.

Each target's library is an optional extra (`mlflow`, `tensorboard`), imported inside the function
that writes to it; none imports a framework. The modules are named `to_*` so that they never shadow
the libraries they write with.
"""
