"""`LambdaTrajectory`: PP-SSL's lambda at every training step, kept and plotted."""

import keras
import tensorflow as tf


class LambdaTrajectory(keras.callbacks.Callback):
    """Records the per-step lambda of a `PPSSL` model (Table S8 trajectory).

    After every training batch it reads `logs[key]` (PPSSL's `"lambda_step"`:
    the lambda used at that step) into `values`, and, with a `log_dir`, writes
    it as the TensorBoard scalar `ppssl/lambda` at the step index (0, 1, ...
    over the whole fit) with its own summary writer. It runs in Python between
    steps, so it works whether or not the train step is XLA-compiled (a
    `tf.summary` call inside a jitted step would fail); it needs
    `steps_per_execution=1` to see every step.

    Args:
        log_dir: directory of the event files (`None`: only keep `values`).
        key: the logs entry to record.

    Example:

    >>> trajectory = LambdaTrajectory()
    >>> trajectory.on_train_batch_end(0, {"lambda_step": 1.0})
    >>> trajectory.on_train_batch_end(1, {"lambda_step": 0.29})
    >>> trajectory.values
    [1.0, 0.29]
    """

    def __init__(self, log_dir=None, key="lambda_step"):
        super().__init__()
        self.log_dir = log_dir
        self.key = key
        self.values = []
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_batch_end(self, batch, logs=None):
        if not logs or self.key not in logs:
            return
        value = float(logs[self.key])
        if self._writer is not None:
            with self._writer.as_default():
                tf.summary.scalar("ppssl/lambda", value, step=len(self.values))
        self.values.append(value)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
