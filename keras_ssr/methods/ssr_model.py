"""`SSRModel`: the base of every keras-ssr method (three streams, metrics, eval)."""

import keras
import tensorflow as tf

from keras_ssr.models.ssr_regressor import SSRRegressor

METRIC_NAMES = ("mae", "mse", "rmse", "r2")


class SSRModel(keras.Model):
    """Base semi-supervised regression model with a shared `train_step`.

    A method subclass implements `compute_losses(batch)`, returning a dict of
    scalar loss terms with the total under `"loss"`, in standardised target
    units (and optionally `"labeled_predictions"`, see `labeled_terms`). The base
    class owns what every method shares:

    - the three batch streams: `batch["labeled"] = (x_l, y_l)`,
      `batch["unlabeled"] = (x_weak, x_strong)`, `batch["holdout"] = (x_h, y_h)`
      (see `keras_ssr.data.streams.make_train_stream`);
    - the gradient step on `trainable_weights_to_update()` with the compiled
      optimizer (`apply_gradients`), losses scaled for `tf.distribute` replicas;
    - `after_update(batch)`, a hook for EMA teachers;
    - metrics in target units (MAE, MSE, RMSE, R2) on the labeled batch in
      training and on `(x, y)` batches in `test_step`, and a mean tracker per
      loss term;
    - the linear ramp-up of the unlabeled weight, `unlabeled_weight_now()`.

    Args:
        regressor: the `SSRRegressor` being trained (what is exported).
        unlabeled_weight: final weight lambda of the unlabeled loss.
        rampup_steps: steps over which lambda ramps linearly from 0 (0: none).
        **kwargs: standard `keras.Model` arguments.
    """

    loss_terms = ("loss", "labeled_loss")

    def __init__(self, regressor, unlabeled_weight=1.0, rampup_steps=0, **kwargs):
        super().__init__(**kwargs)
        self.regressor = regressor
        self.unlabeled_weight = float(unlabeled_weight)
        self.rampup_steps = int(rampup_steps)
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in self.loss_terms}
        self.target_metrics = [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.MeanSquaredError(name="mse"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.R2Score(name="r2"),
        ]

    def build(self, input_shape):
        if not self.regressor.built:
            self.regressor.build(input_shape)
        # R2Score creates its variables on first use; under tf.distribute that
        # must happen here, not inside the traced train step.
        self.target_metrics[-1]._build((None, 1), (None, 1))
        self.build_method(input_shape)
        self.built = True

    def build_method(self, input_shape):
        """Creates method state (teachers, extra optimizers); called by `build`."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' TF trainer reduces a first input batch across replicas to
        # build the model symbolically; under MultiWorkerMirroredStrategy that
        # reduce fails on our dict-of-tuples batches ("Attempt to convert a
        # value ({'holdout': (PerReplica...") and it is useless once the model
        # and its optimizer are built (the trainer builds both before fit).
        if self.built and getattr(self.optimizer, "built", False):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def call(self, inputs, training=False):
        return self.regressor(inputs, training=training)

    @property
    def metrics(self):
        return list(self.loss_trackers.values()) + self.target_metrics

    def compute_losses(self, batch):
        """Returns a dict of scalar loss terms (standardised units), `"loss"` total."""
        raise NotImplementedError

    def trainable_weights_to_update(self):
        """Variables the compiled optimizer updates (default: the regressor)."""
        return self.regressor.trainable_weights

    def compute_gradients(self, batch):
        """Gradients of `compute_losses(batch)["loss"]`, scaled for replicas."""
        variables = self.trainable_weights_to_update()
        with tf.GradientTape() as tape:
            terms = self.compute_losses(batch)
            loss = terms["loss"] / num_replicas()
        return tape.gradient(loss, variables), variables, terms

    def apply_gradients(self, grads, variables, terms=None):
        """Applies `compute_gradients`' output (default: the compiled optimizer).

        `terms` is the step's loss-term dict, for methods whose update depends
        on a flag computed with the gradients (HPL's meta step).
        """
        self.optimizer.apply(grads, variables)

    def after_update(self, batch):
        """Hook run after the optimizer step (EMA teachers)."""

    def train_step(self, data):
        grads, variables, terms = self.compute_gradients(data)
        self.apply_gradients(grads, variables, terms)
        self.after_update(data)
        self.track_losses(terms)
        x_l, y_l = data["labeled"]
        y_pred = terms.get("labeled_predictions")
        if y_pred is None:
            y_pred = self.regressor.standardized(x_l, training=False)
        self._update_target_metrics(
            self.regressor.destandardize(keras.ops.reshape(y_l, (-1, 1))),
            self.regressor.destandardize(keras.ops.stop_gradient(y_pred)),
        )
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        y_pred = self.regressor(x, training=False)
        self._update_target_metrics(keras.ops.reshape(y, (-1, 1)), y_pred)
        return {m.name: m.result() for m in self.target_metrics}

    def track_losses(self, terms):
        """Updates the mean tracker of every loss term named in `loss_terms`."""
        for name, value in terms.items():
            if name in self.loss_trackers:
                self.loss_trackers[name].update_state(value)

    def _update_target_metrics(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        for metric in self.target_metrics:
            metric.update_state(y_true, y_pred)

    def unlabeled_weight_now(self):
        """lambda_t: `unlabeled_weight` times the linear ramp-up factor."""
        dtype = self.compute_dtype
        if self.rampup_steps <= 0:
            return keras.ops.convert_to_tensor(self.unlabeled_weight, dtype=dtype)
        step = keras.ops.cast(self.optimizer.iterations, dtype)
        ramp = keras.ops.minimum(1.0, step / float(self.rampup_steps))
        return self.unlabeled_weight * ramp

    def labeled_terms(self, batch, training=True):
        """Labeled MSE (standardised units) and the predictions it was computed on.

        Returns a dict with `"labeled_loss"` and `"labeled_predictions"`; the base
        `train_step` reuses the predictions for the training metrics.
        """
        x_l, y_l = batch["labeled"]
        y_pred = self.regressor.standardized(x_l, training=training)
        return {"labeled_loss": mse(y_l, y_pred), "labeled_predictions": y_pred}

    def get_config(self):
        config = super().get_config()
        config.update(
            regressor=keras.saving.serialize_keras_object(self.regressor),
            unlabeled_weight=self.unlabeled_weight,
            rampup_steps=self.rampup_steps,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["regressor"] = keras.saving.deserialize_keras_object(config["regressor"])
        return cls(**config)


def mse(y_true, y_pred):
    """Mean squared error between a target vector and `(batch, 1)` predictions."""
    y_true = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), (-1, 1))
    return keras.ops.mean(keras.ops.square(y_true - y_pred))


def num_replicas():
    """Replicas of the current `tf.distribute` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def check_choice(name, value, choices):
    """Raises a `ValueError` naming the valid `choices` if `value` is not one."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


__all__ = [
    "SSRModel",
    "SSRRegressor",
    "check_choice",
    "mse",
    "num_replicas",
    "METRIC_NAMES",
]
