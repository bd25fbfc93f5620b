"""`SSRModel`: the base of every keras-ssr method (three streams, metrics, eval)."""

import dataclasses
import math

import keras
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.conditional_apply import apply_if
from keras_ssr.models.ssr_regressor import SSRRegressor

METRIC_NAMES = ("mae", "mse", "rmse", "r2")


@dataclasses.dataclass
class SSLConfig(ConfigSection):
    """The unlabeled-loss weight shared by the semi-supervised methods.

    Args:
        unlabeled_weight: lambda, the final weight of the unlabeled loss.
        rampup_fraction: fraction of training over which lambda ramps up
            linearly from 0 (turned into `rampup_steps` by `to_kwargs`).
    """

    name = "ssl"
    title = "semi-supervised loss weight (every method with an unlabeled loss)"

    unlabeled_weight: float = option(
        0.3,
        "lambda, the weight of the unlabeled loss",
        source="validation MSE on California Housing, seeds 0-1",
    )
    rampup_fraction: float = option(
        0.2, "fraction of training over which lambda ramps up linearly from 0"
    )

    def to_kwargs(self, total_steps=None):
        fraction = self.rampup_fraction
        if not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"rampup_fraction={fraction} must be in [0, 1]: the fraction of "
                "training over which the unlabeled weight ramps up."
            )
        steps = 0 if total_steps is None else int(fraction * total_steps)
        return {"unlabeled_weight": self.unlabeled_weight, "rampup_steps": steps}


@dataclasses.dataclass
class VariableGroup:
    """Trainable variables updated together by one optimizer.

    Args:
        variables: the variables.
        optimizer: anything with `apply(grads, variables)` (a built Keras
            optimizer, or e.g. PP-SSL's projected AdaGrad on lambda).
        condition: name of a step term (a scalar computed with the gradients);
            when given, the group is only updated on steps where it is > 0
            (HPL's phi on meta steps), see `apply_if`.
    """

    variables: list
    optimizer: object
    condition: str | None = None


class SSRModel(keras.Model):
    """Base semi-supervised regression model with a shared `train_step`.

    A method subclass implements `compute_losses(batch)`, returning a dict of
    scalar loss terms with the total under `"loss"`, in standardised target
    units (and optionally `"labeled_predictions"`, see `labeled_terms`). The base
    class owns what every method shares:

    - the three batch streams: `batch["labeled"] = (x_l, y_l)`,
      `batch["unlabeled"] = (x_weak, x_strong)`, `batch["holdout"] = (x_h, y_h)`
      (see `keras_ssr.data.streams.make_train_stream`);
    - the gradient step: `compute_gradients` returns one gradient list per
      named group of `variable_groups()` and `apply_gradients` applies each
      with its group's optimizer (default: one group, the regressor, with the
      compiled optimizer); losses are scaled for `tf.distribute` replicas;
    - `after_update(batch)`, a hook for EMA teachers;
    - metrics in target units (MAE, MSE, RMSE, R2) on the labeled batch in
      training and on `(x, y)` batches in `test_step`, and a mean tracker per
      loss term;
    - the linear ramp-up of the unlabeled weight, `unlabeled_weight_now()`;
    - Keras' multi-worker log reduction (see `_distribution_safe_logs`).

    A method also declares what a trainer must provide, so that a trainer
    needs to know nothing about it by name (see docs/adding_a_method.md):

    - `uses_unlabeled`: trains on the unlabeled stream (False: labeled only);
    - `uses_teacher`: needs a fixed teacher's labels, `batch["teacher"]`;
    - `uses_holdout`: consumes `batch["holdout"]`; a trainer may set a
      separate hold-out split aside for it (else it resamples the labeled rows);
    - `uses_unlabeled_index`: keeps per-example state: the stream adds
      `batch["unlabeled_index"]` and a trainer passes `num_unlabeled` (the
      unlabeled rows' count) to the constructor;
    - `raw_unlabeled_view`: the weak view must be the unaugmented input;
    - `labels_all_rows`: trains with every training row labeled (the
      Fully-supervised upper bound; set on a registry entry);
    - `config_sections`: the `ConfigSection` classes whose fields are its
      constructor arguments;
    - `prepare(context)` and `callbacks(context)`: work before `fit` and its
      TensorBoard panels, given a `RunContext`.

    Args:
        regressor: the `SSRRegressor` being trained (what is exported).
        unlabeled_weight: final weight lambda of the unlabeled loss (>= 0).
        rampup_steps: steps over which lambda ramps linearly from 0 (0: none).
        **kwargs: standard `keras.Model` arguments.
    """

    uses_unlabeled = True
    uses_teacher = False
    uses_holdout = False
    uses_unlabeled_index = False
    raw_unlabeled_view = False
    labels_all_rows = False
    config_sections = (SSLConfig,)

    loss_terms = ("loss", "labeled_loss")

    def __init__(self, regressor, unlabeled_weight=1.0, rampup_steps=0, **kwargs):
        super().__init__(**kwargs)
        self.regressor = regressor
        self.unlabeled_weight = check_finite(
            "unlabeled_weight", unlabeled_weight, low=0.0
        )
        if int(rampup_steps) < 0:
            raise ValueError(f"rampup_steps must be >= 0, got {rampup_steps}.")
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

    def build_optimizers(self):
        """Builds the compiled optimizer on the variables it updates.

        Call after `compile` (under the strategy scope), before `fit`: extra
        optimizers are built by `build_method`, and an optimizer built lazily
        inside a distributed step fails (see STACK.md).
        """
        variables = [
            v
            for group in self.variable_groups().values()
            if group.optimizer is self.optimizer
            for v in group.variables
        ]
        self.optimizer.build(variables)

    def prepare(self, context):
        """Work before `fit` that needs the run's data (a `RunContext`)."""

    def callbacks(self, context):
        """The method's own Keras callbacks (TensorBoard panels) for a run."""
        return []

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

    def variable_groups(self):
        """Named groups of trainable variables, each with its optimizer.

        Returns an ordered dict `name -> VariableGroup`; the default is one
        group, `"regressor"`, updated by the compiled optimizer.
        """
        return {
            "regressor": VariableGroup(self.regressor.trainable_weights, self.optimizer)
        }

    def compute_gradients(self, batch):
        """`(grads, terms)`: gradients of `compute_losses(batch)["loss"]` per
        variable group (a dict like `variable_groups()`), scaled for replicas,
        and the step's loss terms."""
        variables = {n: g.variables for n, g in self.variable_groups().items()}
        with tf.GradientTape() as tape:
            terms = self.compute_losses(batch)
            loss = terms["loss"] / num_replicas()
        return tape.gradient(loss, variables), terms

    def apply_gradients(self, grads, terms):
        """Applies each group's gradients with the group's optimizer.

        A group with a `condition` is updated only when `terms[condition] > 0`
        (the flag computed with the gradients, see `apply_if`).
        """
        for name, group in self.variable_groups().items():
            if group.condition is None:
                group.optimizer.apply(grads[name], group.variables)
            else:
                flag = keras.ops.greater(terms[group.condition], 0)
                apply_if(group.optimizer, flag, grads[name], group.variables)

    def after_update(self, batch):
        """Hook run after the optimizer step (EMA teachers)."""

    def train_step(self, data):
        grads, terms = self.compute_gradients(data)
        self.apply_gradients(grads, terms)
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
        return _distribution_safe_logs({m.name: m.result() for m in self.metrics})

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        self._update_target_metrics(keras.ops.reshape(y, (-1, 1)), y_pred)
        return _distribution_safe_logs(
            {m.name: m.result() for m in self.target_metrics}
        )

    def inference_model(self):
        """The Keras model that predicts targets from raw inputs: what a
        trainer evaluates and exports (default: the regressor)."""
        return self.regressor

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


def _distribution_safe_logs(logs):
    """Step logs Keras can reduce under `MultiWorkerMirroredStrategy`.

    Keras 3.15 reduces a step's per-replica logs under that strategy with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on scalar logs ("Invalid
    reduction dimension 0 for input with 0 dimensions"). Under it, logs are
    returned with shape `(1,)` so the reduce averages them over all replicas
    into scalars; under other strategies they stay scalars.
    """
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {k: keras.ops.reshape(v, (1,)) for k, v in logs.items()}


def mse(y_true, y_pred):
    """Mean squared error between a target vector and `(batch, 1)` predictions."""
    y_true = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), (-1, 1))
    return keras.ops.mean(keras.ops.square(y_true - y_pred))


def num_replicas():
    """Replicas of the current `tf.distribute` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def check_finite(name, value, low=None, high=None, low_open=False):
    """`float(value)`, refused with a `ValueError` if not finite or out of range.

    Args:
        name: the argument's name, for the message.
        value: the value.
        low, high: inclusive bounds (`None`: unbounded).
        low_open: make the lower bound exclusive.
    """
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    if not math.isfinite(value) or below or (high is not None and value > high):
        low_text = "-inf" if low is None else low
        high_text = "inf" if high is None else high
        interval = f"{'(' if low_open else '['}{low_text}, {high_text}]"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}.")
    return value


def check_choice(name, value, choices):
    """Raises a `ValueError` naming the valid `choices` if `value` is not one."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


__all__ = [
    "SSLConfig",
    "SSRModel",
    "SSRRegressor",
    "VariableGroup",
    "check_choice",
    "check_finite",
    "mse",
    "num_replicas",
    "METRIC_NAMES",
]
