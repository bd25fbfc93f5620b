"""`ResumableCheckpoint`: the complete training state, every N steps, for resume.

Keras' `BackupAndRestore` resumes at an epoch start and saves through
`save_weights`, and a plain `tf.train.Checkpoint(model=...)` of a keras-ssr
method misses state: on a Mean Teacher model it saved neither backbone (they are
reached only through a Python list of layers) and the teacher backbone was not
restored at all. This callback therefore checkpoints an explicit, ordered list
of variables (`training_variables`): every model variable (student, EMA
teachers, g_phi, PP-SSL's lambda and its AdaGrad accumulator, random-seed
states), every optimizer found on the model (the compiled one, HPL's phi and
head optimizers: iterations and slots) and the metric accumulators, with a
manifest of their paths and shapes and the loop position (global step, epoch
history) in the same `tf.train.Checkpoint`.
"""

import json
import os
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.callbacks.nan_guard import NanGuard


def model_optimizers(model):
    """Every optimizer of `model`: the compiled one first, then attributes."""
    found = [model.optimizer] if getattr(model, "optimizer", None) else []
    for name in sorted(vars(model)):
        value = vars(model)[name]
        if isinstance(value, keras.optimizers.Optimizer) and all(
            value is not o for o in found
        ):
            found.append(value)
    return found


def training_variables(model):
    """The variables that define where training is: model then optimizers.

    Returns a list without duplicates, in a deterministic order for a model
    built the same way (`model.variables`, then each optimizer's variables).
    """
    variables, seen = [], set()
    for variable in list(model.variables) + [
        v for optimizer in model_optimizers(model) for v in optimizer.variables
    ]:
        if id(variable) not in seen:
            seen.add(id(variable))
            variables.append(variable)
    return variables


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the full training state every `save_every` steps and every epoch.

    Use `restore()` before `fit`; it returns the saved loop position, from which
    the caller continues the input stream (`dataset.skip(global_step)` for a
    stream that is a seeded function of its position) and `fit`'s
    `initial_epoch`. Call `fit` with `steps_per_epoch - step_in_epoch` steps for
    a partly done epoch: the callback puts back that epoch's training metric
    accumulators once Keras has reset them, so even the epoch logs match an
    uninterrupted run.

    A step is only saved when every variable is finite, so the latest
    checkpoint is the last good state when training diverges.

    Args:
        directory: where checkpoints go (one `tf.train.CheckpointManager`).
        steps_per_epoch: steps of a full epoch.
        save_every: save every this many global steps (0: only at epoch ends).
        max_to_keep: checkpoints kept.
        write: False on non-chief workers of a multi-worker run: they save to a
            temporary directory (every worker must take part in a save).

    Example:

    >>> import numpy as np, tempfile
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> ckpt = ResumableCheckpoint(tempfile.mkdtemp(), steps_per_epoch=2)
    >>> ckpt.set_model(model)
    >>> ckpt.restore() is None  # nothing saved yet
    True
    >>> _ = model.fit(np.ones((4, 2)), np.ones(4), batch_size=2, epochs=1,
    ...               callbacks=[ckpt], verbose=0)
    >>> ckpt.restore()["global_step"]
    2
    """

    def __init__(
        self, directory, steps_per_epoch, save_every=0, max_to_keep=2, write=True
    ):
        super().__init__()
        self.directory = directory if write else tempfile.mkdtemp()
        self.steps_per_epoch = int(steps_per_epoch)
        self.save_every = int(save_every)
        self.max_to_keep = int(max_to_keep)
        self.global_step = 0
        self.history = {}
        self._manager = None
        self._pending_metrics = None
        with tf.init_scope():
            self._position = tf.Variable("", dtype=tf.string, trainable=False)

    def set_model(self, model):
        if self._manager is not None and model is self.model:
            return  # `fit` sets the model again: keep the manager and state
        super().set_model(model)
        self._state = training_variables(model)
        self._metrics = list(model.metrics_variables)
        objects = {f"v{i}": v for i, v in enumerate(self._state)}
        objects.update({f"m{i}": v for i, v in enumerate(self._metrics)})
        checkpoint = tf.train.Checkpoint(position=self._position, **objects)
        self._manager = tf.train.CheckpointManager(
            checkpoint, self.directory, max_to_keep=self.max_to_keep
        )

    @property
    def latest(self):
        """Path prefix of the latest checkpoint (or `None`)."""
        return self._manager.latest_checkpoint

    def manifest(self):
        """`[path, shape]` of every saved variable, Keras' `_N` suffixes removed
        (a second model built in one process is named `hpl_1`, ...)."""
        return [
            [re.sub(r"_\d+(?=[/_]|$)", "", v.path), list(v.shape)]
            for v in self._state + self._metrics
        ]

    def restore(self):
        """Restores the latest checkpoint; returns its position dict or `None`.

        The position has `global_step`, `epoch`, `step_in_epoch` and `history`
        (the per-epoch logs so far).

        Raises:
            ValueError: if the checkpoint was written by a differently built
                model (other method, widths or flags).
        """
        path = self.latest
        if path is None:
            return None
        reader = tf.train.load_checkpoint(path)
        key = "position/.ATTRIBUTES/VARIABLE_VALUE"
        saved = json.loads(reader.get_tensor(key).decode())
        if saved["manifest"] != self.manifest():
            raise ValueError(
                f"The checkpoint {path} was written by a different model "
                "(method, widths or flags differ from this run's): resume with the "
                "original flags, or start a new run with another --run-name."
            )
        self._manager.checkpoint.restore(path).assert_existing_objects_matched()
        self.global_step = saved["global_step"]
        self.history = saved["history"]
        position = dict(saved, **self.position())
        if position["step_in_epoch"]:
            self._pending_metrics = [np.asarray(v) for v in self._metrics]
        return position

    def position(self):
        epoch, step = divmod(self.global_step, self.steps_per_epoch)
        return {"global_step": self.global_step, "epoch": epoch, "step_in_epoch": step}

    def on_epoch_begin(self, epoch, logs=None):
        if self._pending_metrics is not None:  # resumed mid-epoch
            for variable, value in zip(
                self._metrics, self._pending_metrics, strict=True
            ):
                variable.assign(value)
            self._pending_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        end_of_epoch = self.global_step % self.steps_per_epoch == 0
        if self.save_every and self.global_step % self.save_every == 0:
            if not end_of_epoch:  # epoch ends save once the history is complete
                self.save()

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self.save()

    def save(self):
        """Writes a checkpoint of the current state, unless a variable is NaN/inf."""
        if not all_finite(self._state):
            return None
        position = dict(self.position(), history=self.history, manifest=self.manifest())
        self._position.assign(json.dumps(position))
        os.makedirs(self.directory, exist_ok=True)
        return self._manager.save(checkpoint_number=self.global_step)


def fit_resumable(
    model, make_stream, resumable, epochs, resume, best_path, callbacks, **fit_kwargs
):
    """`model.fit` on `make_stream()`, checkpointed and resumable mid-epoch.

    Every `resumable.save_every` steps and at every epoch end,
    `resumable` writes the whole training state. With `resume` the latest
    checkpoint is restored, the stream continues at the saved position
    (`make_stream().skip(global_step)`: the streams are seeded functions of
    their position) and a partly done epoch runs only its remaining steps; in
    deterministic mode the result equals an uninterrupted run. Without
    `resume` old checkpoints in that directory are deleted.

    Args:
        model: a compiled, built method model.
        make_stream: returns a fresh endless training `tf.data.Dataset`, one
            per `fit` call: a dataset with a seeded `shuffle` reshuffles
            differently for each new iterator, so reusing one would not
            continue the same sequence.
        resumable: a `ResumableCheckpoint` (its `steps_per_epoch` is used).
        epochs: total epochs of the run.
        resume: continue from the latest checkpoint if there is one.
        best_path: `.weights.h5` path of the best-`val_mse` weights.
        callbacks: further Keras callbacks.
        **fit_kwargs: passed to `fit` (`validation_data`, `verbose`).

    Returns:
        The per-epoch logs of the whole run: `{name: [value per epoch]}`.

    Raises:
        NonFiniteLossError: at the first step with a NaN/inf loss term.
    """
    resumable.set_model(model)
    position = resumable.restore() if resume else None
    if not resume:
        _clear(resumable.directory)
    start = position["global_step"] if position else 0
    best = min(resumable.history.get("val_mse", []), default=None)
    best_checkpoint = keras.callbacks.ModelCheckpoint(
        best_path,
        monitor="val_mse",
        mode="min",
        save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=best,
    )
    guard = NanGuard(initial_step=start)
    every = [guard, best_checkpoint] + callbacks + [resumable]
    steps = resumable.steps_per_epoch
    while start < epochs * steps:
        epoch, done = divmod(start, steps)
        model.fit(
            make_stream().skip(start),
            initial_epoch=epoch,
            epochs=epoch + 1 if done else epochs,
            steps_per_epoch=steps - done,
            callbacks=every,
            shuffle=False,
            **fit_kwargs,
        )
        start = resumable.global_step
    return resumable.history


def _clear(directory):
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))


def all_finite(variables):
    """Whether every floating-point variable holds only finite values."""
    return all(
        bool(tf.reduce_all(tf.math.is_finite(v.value)))
        for v in variables
        if v.dtype in ("float16", "bfloat16", "float32", "float64")
    )
