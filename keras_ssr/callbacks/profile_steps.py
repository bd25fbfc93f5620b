"""`ProfileSteps`: TensorFlow's profiler over a span of training steps."""

import keras
import tensorflow as tf

from keras_ssr.op_profile import read_op_profile


class ProfileSteps(keras.callbacks.Callback):
    """Records a profiler trace of training steps `start` to `stop` (inclusive).

    Steps are counted from 1 over the whole `fit` (across epochs, like
    `optimizer.iterations + 1`). The trace goes to `log_dir` in TensorBoard's
    layout (`plugins/profile/<run>/<host>.xplane.pb`): open it with
    `tensorboard --logdir <log_dir>` and the Profile tab of the
    `tensorboard-plugin-profile` package (`pip install keras-ssr[profile]`).
    When the span ends the callback also reads the trace with TensorFlow alone
    and prints where the time went (forward, backward, optimizer update, and
    the top op types by self time; see `keras_ssr.op_profile`), which needs no
    plugin. The first steps of a run trace and compile the step function:
    start after them (e.g. `start=5`).

    Args:
        log_dir: directory of the trace.
        start: first profiled step (1-based).
        stop: last profiled step (>= start).
        summary: print the op table when the span ends.
        top: op types listed in the table.

    Example:

    >>> callback = ProfileSteps("runs/profile", start=5, stop=7)
    >>> # model.fit(stream, steps_per_epoch=10, callbacks=[callback])

    References:
        TensorFlow guide "Optimize TensorFlow performance using the Profiler".
    """

    def __init__(self, log_dir, start, stop, summary=True, top=15):
        super().__init__()
        self.start, self.stop = check_profile_steps(start, stop)
        self.log_dir = str(log_dir)
        self.summary = bool(summary)
        self.top = int(top)
        self.profile = None
        self._step = 0
        self._active = False

    def on_train_batch_begin(self, batch, logs=None):
        self._step += 1
        if self._step == self.start:
            tf.profiler.experimental.start(self.log_dir)
            self._active = True

    def on_train_batch_end(self, batch, logs=None):
        if self._active and self._step >= self.stop:
            self._finish()

    def on_train_end(self, logs=None):
        if self._active:
            self._finish()

    def _finish(self):
        steps = self._step - self.start + 1
        tf.profiler.experimental.stop()
        self._active = False
        names = [
            getattr(self.model, attribute).name
            for attribute in ("optimizer", "phi_optimizer", "head_optimizer")
            if getattr(self.model, attribute, None) is not None
        ]
        self.profile = read_op_profile(self.log_dir, optimizer_names=names)
        if self.summary:
            print(
                f"\nProfile of training steps {self.start}-{self._step} "
                f"({self.profile.trace_path}):\n{self.profile.table(steps, self.top)}"
            )


def check_profile_steps(start, stop):
    """`(start, stop)` as ints, or a `ValueError` saying what is wrong."""
    try:
        start, stop = int(start), int(stop)
    except (TypeError, ValueError):
        raise ValueError(
            f"Profile steps must be integers, got {start!r} and {stop!r}."
        ) from None
    if start < 1 or stop < start:
        raise ValueError(
            f"Profile steps need 1 <= start <= stop, got start={start}, "
            f"stop={stop} (e.g. 5,7: steps 5 to 7, after the first steps have "
            "traced the step function)."
        )
    return start, stop


def parse_profile_steps(text):
    """`"A,B"` (or `"A"`) -> `(A, B)`: the value of a `--profile-steps` flag.

    Example:

    >>> parse_profile_steps("5,7")
    (5, 7)
    """
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"--profile-steps takes START,STOP (steps counted from 1, e.g. 5,7), "
            f"got {text!r}."
        )
    return check_profile_steps(*parts)
