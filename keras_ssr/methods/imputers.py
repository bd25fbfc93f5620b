"""Imputers psi: where a method's pseudo-labels for unlabeled rows come from."""

import keras
import tensorflow as tf

from keras_ssr.methods.ssr_model import check_choice
from keras_ssr.models.ssr_regressor import SSRRegressor

IMPUTERS = ("pseudo_label", "mean_teacher")


class OwnPrediction:
    """psi(x) = the model's own stop-gradient prediction (pseudo-labeling).

    Example:

    >>> import numpy as np
    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> regressor = SSRRegressor(MLPBackbone((4,)))
    >>> OwnPrediction().labels(regressor, np.ones((2, 3), "float32")).shape
    TensorShape([2, 1])
    """

    name = "pseudo_label"

    def build_from(self, regressor, input_shape):
        """Nothing to build: the regressor is the imputer."""

    def labels(self, regressor, x, own=None, training=False):
        """Stop-gradient standardised predictions of `regressor` on `x`.

        Args:
            regressor: the model being trained.
            x: inputs (the weak view).
            own: the regressor's prediction on `x` when the caller already has
                it (in the mode `training` asks for), to avoid a second
                forward pass.
            training: predict in training mode (dropout active, BatchNorm
                batch statistics, as the reference codes' pseudo-labels) or in
                inference mode (False).
        """
        if own is None:
            own = regressor.standardized(x, training=training)
        return keras.ops.stop_gradient(own)

    def update(self, regressor):
        """Nothing to update after an optimizer step."""


@keras.saving.register_keras_serializable(package="keras_ssr")
class EMATeacher(keras.layers.Layer):
    """psi(x) = the prediction of an exponential moving average of the model.

    After every optimizer step (`update`) each teacher weight t follows its
    student weight s: `t <- decay * t + (1 - decay) * s` (Mean Teacher). With
    `warmup=True` the k-th update (k = 0, 1, ...) uses
    `min(1 - 1 / (k + 1), decay)` instead, as the Mean Teacher and L2I
    reference codes do: the teacher is the running mean of the students while
    that is shorter than the EMA's memory (the first update copies the
    student). The teacher is a layer of the method model, so it is saved and
    checkpointed with it (with its update count); it is never trained by
    gradients.

    Args:
        regressor: the student `SSRRegressor` (the teacher copies its config).
        decay: the EMA decay, in [0, 1).
        warmup: use the warm-up decay above.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> student = SSRRegressor(MLPBackbone((4,)))
    >>> teacher = EMATeacher(student, decay=0.9)
    >>> teacher.build_from(student, (None, 3))
    >>> teacher.labels(student, np.ones((2, 3), "float32")).shape
    TensorShape([2, 1])

    References:
        Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017.
    """

    def __init__(self, regressor, decay=0.999, warmup=False, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}.")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.teacher = SSRRegressor.from_config(regressor.get_config())

    def build_from(self, regressor, input_shape):
        """Builds the teacher and copies the student's weights into it."""
        self.teacher.build(input_shape)
        self.teacher.trainable = False
        for t, s in zip(self.teacher.weights, regressor.weights, strict=True):
            t.assign(s)
        if self.warmup:  # updates taken so far, for the warm-up decay
            self.updates = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="updates"
            )
        self.built = True

    def labels(self, regressor, x, own=None, training=False):
        """The teacher's stop-gradient standardised predictions on `x`.

        With `training=True` the teacher's dropout is active; its BatchNorm
        layers stay in inference mode (moving statistics), since the teacher
        is not trainable (Keras runs a frozen BatchNormalization in inference
        mode).
        """
        prediction = self.teacher.standardized(x, training=training)
        return keras.ops.stop_gradient(prediction)

    def update(self, regressor):
        """One EMA step toward `regressor` (a merge call under a strategy)."""
        context = tf.distribute.get_replica_context()
        if tf.distribute.has_strategy() and context is not None:
            context.merge_call(lambda _: self._average(regressor))
        else:
            self._average(regressor)

    def get_config(self):
        config = super().get_config()
        config.update(
            regressor=keras.saving.serialize_keras_object(self.teacher),
            decay=self.decay,
            warmup=self.warmup,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["regressor"] = keras.saving.deserialize_keras_object(config["regressor"])
        return cls(**config)

    def _average(self, regressor):
        decay = self.decay
        if self.warmup:  # min(1 - 1 / (k + 1), decay) at the k-th update
            count = keras.ops.convert_to_tensor(self.updates)
            decay = keras.ops.minimum(1.0 - 1.0 / (count + 1.0), decay)
            self.updates.assign_add(1.0)
        for t, s in zip(self.teacher.weights, regressor.weights, strict=True):
            rate = keras.ops.cast(decay, t.dtype) if self.warmup else decay
            t.assign(rate * t + (1.0 - rate) * s)


def make_imputer(name, regressor, ema_decay=0.999, ema_warmup=False):
    """The imputer called `name` (one of `IMPUTERS`) for `regressor`."""
    check_choice("imputer", name, IMPUTERS)
    if name == "mean_teacher":
        return EMATeacher(regressor, ema_decay, ema_warmup, name="imputer")
    return OwnPrediction()
