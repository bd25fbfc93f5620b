"""`PPSSL`: prediction-powered semi-supervised regression and its baselines."""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.callbacks.lambda_trajectory import LambdaTrajectory
from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    DEFAULT_CLOSED_FORM_POINT,
    linear_closed_form_lambda,
)
from keras_ssr.methods.ssr_model import (
    SSLConfig,
    SSRModel,
    VariableGroup,
    check_choice,
    check_finite,
    mse,
    num_replicas,
)

LAMBDA_MODES = ("adaptive", "fixed", "closed_form", "ssl", "only_labeled")


@dataclasses.dataclass
class PPSSLConfig(ConfigSection):
    """PP-SSL's and the PPI baselines' constructor arguments (see `PPSSL`)."""

    name = "ppssl"
    title = "PP-SSL (methods ppssl, ppi_fixed, ppi_closed_form, ssl, only_labeled)"

    lambda_value: float | None = option(
        None,
        "lambda of ppi_fixed (default 1: plain PPI); ppssl's initial lambda",
        flag="--ppi-lambda",
        source="paper Algorithm 1 (lambda_0 = 1)",
    )
    lambda_diameter: float = option(
        1.0, "D of PP-SSL's AdaGrad lambda step (eq. 12)", source="paper eq. 12"
    )
    closed_form_at: str = option(
        DEFAULT_CLOSED_FORM_POINT,
        "where ppi_closed_form evaluates the PPI++ closed form (ppi_py: ppi_py's "
        "own point estimate; ppi_minimizer: the exact lambda = 1 PPI minimiser)",
        choices=CLOSED_FORM_POINTS,
        source="ppi_py (Angelopoulos et al.), the PP-SSL paper's PPI++ baseline",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class PPSSL(SSRModel):
    """Prediction-powered SSL (PP-SSL) with a fixed teacher, and its baselines.

    With teacher pseudo-labels fhat(x) and the squared loss l, each step forms
    the labeled gradient g_l, the teacher-label gradients on the same labeled
    batch ghat_l and on the unlabeled batch ghat_u, and trains on

        g(lambda) = g_l + lambda * (ghat_u - ghat_l)        (eq. 6),

    the gradient of the PPI++ loss L_l + lambda * (Lhat_u - Lhat_l) (eq. 4),
    unbiased for the labeled-risk gradient for every lambda. `lambda_mode`:

    - `"adaptive"` (PP-SSL, Algorithm 1): lambda starts at `lambda_value`
      (paper: 1) and follows projected 1-D AdaGrad on
      h_t(lambda) = ||g_t(lambda)||^2 (eq. 11-12), see `adagrad_lambda_step`.
      Two backward passes per step (g_l and ghat_u - ghat_l from one forward).
    - `"fixed"`: constant lambda = `lambda_value` (1: plain PPI). One backward.
    - `"closed_form"`: PPI++ baseline, constant lambda from the closed form
      (`keras_ssr.methods.ppi_closed_form`), set by `calibrate_lambda`
      before `fit`.
    - `"ssl"`: biased baseline L_l + w_t * Lhat_u (eq. 2), w_t the base
      class's `unlabeled_weight_now()` (default 1, with optional ramp-up).
    - `"only_labeled"`: lambda = 0, L_l only (needs no teacher labels).

    The teacher is not part of the model: its standardised predictions come
    with every batch, `batch["teacher"] = (yhat_l, yhat_u)`, aligned with
    `batch["labeled"] = (x_l, y_l)` and `batch["unlabeled"] = (x_u, _)` (see
    `keras_ssr.models.teacher.Teacher`). The unlabeled rows are taken from the
    weak view, which must be the unaugmented features (weak noise 0) for the
    unbiasedness of eq. 7 to hold. lambda (`lambda_variable`) and the AdaGrad
    accumulator are non-trainable variables: they checkpoint with the model
    and stay identical across `tf.distribute` replicas. The lambda used at
    each step is logged twice: `"lambda"` is its mean over the epoch so far,
    `"lambda_step"` (a `LastValue` metric) the value of the current step, so
    batch logs carry the per-step trajectory (Table S8; written to TensorBoard
    per step by `keras_ssr.callbacks.lambda_trajectory.LambdaTrajectory`) and
    epoch logs the lambda reached at the epoch's last step.

    Args:
        regressor: the student `SSRRegressor`.
        lambda_mode: one of `LAMBDA_MODES`.
        lambda_value: initial lambda (`"adaptive"`, default 1), the constant
            lambda (`"fixed"`, default 1) or the calibrated lambda
            (`"closed_form"`, set by `calibrate_lambda`); in [0, 1].
        lambda_diameter: D, the diameter of AdaGrad's step (eq. 12; paper 1).
        **kwargs: `SSRModel` arguments; `unlabeled_weight` and
            `rampup_steps` only act in `"ssl"` mode.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = PPSSL(SSRRegressor(MLPBackbone((8,))), lambda_mode="adaptive")
    >>> model.build((None, 3))
    >>> float(model.lambda_variable.numpy())
    1.0

    References:
        Prediction-Powered Semi-Supervised Learning with Online Power Tuning
        (PP-SSL), eq. 2, 4, 6, 11-12 and Algorithm 1; Angelopoulos, Duchi and
        Zrnic, PPI++: Efficient Prediction-Powered Inference, 2023.
    """

    uses_teacher = True
    raw_unlabeled_view = True  # eq. 7: the teacher labels the rows the student sees
    config_sections = (SSLConfig, PPSSLConfig)
    loss_terms = (
        "loss",
        "labeled_loss",
        "teacher_labeled_loss",
        "teacher_unlabeled_loss",
        "lambda",
        "lambda_step",
    )

    def __init__(
        self,
        regressor,
        lambda_mode="adaptive",
        lambda_value=None,
        lambda_diameter=1.0,
        closed_form_at=DEFAULT_CLOSED_FORM_POINT,
        **kwargs,
    ):
        super().__init__(regressor, **kwargs)
        check_choice("lambda_mode", lambda_mode, LAMBDA_MODES)
        check_choice("closed_form_at", closed_form_at, CLOSED_FORM_POINTS)
        self.lambda_mode = lambda_mode
        self.lambda_value = _initial_lambda(lambda_mode, lambda_value)
        self.lambda_diameter = check_finite(
            "lambda_diameter", lambda_diameter, low=0.0, low_open=True
        )
        self.closed_form_at = closed_form_at
        self.loss_trackers["lambda_step"] = LastValue(name="lambda_step")
        if lambda_mode == "only_labeled":
            for name in ("teacher_labeled_loss", "teacher_unlabeled_loss"):
                self.loss_trackers.pop(name)

    def build_method(self, input_shape):
        value = 0.0 if self.lambda_value is None else self.lambda_value
        self.lambda_variable = self._state("lambda", value)
        self.lambda_accumulator = self._state("lambda_accumulator", 0.0)
        self.lambda_optimizer = ProjectedAdaGrad(
            self.lambda_accumulator, self.lambda_diameter
        )

    def variable_groups(self):
        """The regressor, and in `"adaptive"` mode lambda (`ProjectedAdaGrad`)."""
        groups = super().variable_groups()
        if self.lambda_mode == "adaptive":
            groups["lambda"] = VariableGroup(
                [self.lambda_variable], self.lambda_optimizer
            )
        return groups

    def prepare(self, context):
        """`"closed_form"` mode: calibrates lambda on the run's labeled rows and
        teacher labels (`calibrate_lambda` at `closed_form_at`)."""
        if self.lambda_mode != "closed_form":
            return
        teacher_labeled, teacher_unlabeled = context.teacher_labels
        self.calibrate_lambda(
            context.labeled,
            teacher_labeled,
            context.unlabeled_x,
            teacher_unlabeled,
            at=self.closed_form_at,
        )

    def callbacks(self, context):
        """`"adaptive"` mode: lambda at every step in TensorBoard (Table S8)."""
        if self.lambda_mode != "adaptive":
            return []
        return [LambdaTrajectory(os.path.join(context.log_dir, "lambda"))]

    def _state(self, name, value):
        # ONLY_FIRST_REPLICA: an assign in replica context keeps replica 0's
        # value on every replica (all replicas compute the same one anyway).
        # np.float64: `Constant` casts a Python float through float32 first.
        return self.add_weight(
            name=name,
            shape=(),
            initializer=keras.initializers.Constant(np.float64(value)),
            trainable=False,
            aggregation="only_first_replica",
        )

    def compute_losses(self, batch):
        terms = self.labeled_terms(batch)
        if self.lambda_mode == "only_labeled":
            terms["loss"] = terms["labeled_loss"]
            terms["lambda"] = keras.ops.zeros_like(terms["loss"])
            terms["lambda_step"] = terms["lambda"]
            return terms
        yhat_l, yhat_u = batch["teacher"]
        x_u = batch["unlabeled"][0]
        pred_u = self.regressor.standardized(x_u, training=True)
        terms["teacher_labeled_loss"] = mse(yhat_l, terms["labeled_predictions"])
        terms["teacher_unlabeled_loss"] = mse(yhat_u, pred_u)
        weight = keras.ops.cast(self.current_lambda(), terms["labeled_loss"].dtype)
        terms["lambda"] = terms["lambda_step"] = weight
        terms["loss"] = terms["labeled_loss"] + weight * self._unlabeled_part(terms)
        return terms

    def current_lambda(self):
        """lambda_t: the variable (PPI modes) or w_t (`"ssl"`)."""
        if self.lambda_mode == "ssl":
            return self.unlabeled_weight_now()
        self._check_calibrated()
        return keras.ops.stop_gradient(self.lambda_variable.value)

    def _unlabeled_part(self, terms):
        if self.lambda_mode == "ssl":  # eq. 2
            return terms["teacher_unlabeled_loss"]
        # eq. 4: the PPI correction Lhat_u - Lhat_l.
        return terms["teacher_unlabeled_loss"] - terms["teacher_labeled_loss"]

    def compute_gradients(self, batch):
        """g(lambda_t) (eq. 6); in `"adaptive"` mode also d_t for lambda.

        Adaptive mode takes one forward and two backward passes (g_l and
        ghat_u - ghat_l); d_t is the `"lambda"` group's gradient.
        """
        if self.lambda_mode != "adaptive":
            return super().compute_gradients(batch)  # one backward
        variables = self.regressor.trainable_weights
        with tf.GradientTape(persistent=True) as tape:
            terms = self.compute_losses(batch)
            scale = 1.0 / num_replicas()
            labeled = terms["labeled_loss"] * scale
            correction = self._unlabeled_part(terms) * scale
        g_l = _zeros_for_none(tape.gradient(labeled, variables), variables)
        delta = _zeros_for_none(tape.gradient(correction, variables), variables)
        del tape
        lam = terms["lambda"]
        grads = [g + lam * dg for g, dg in zip(g_l, delta, strict=True)]  # eq. 6
        terms["lambda_gradient"] = lambda_gradient(g_l, delta, lam)
        return {"regressor": grads, "lambda": [terms["lambda_gradient"]]}, terms

    def calibrate_lambda(
        self, labeled, teacher_labeled, x_u, teacher_u, at=DEFAULT_CLOSED_FORM_POINT
    ):
        """Sets lambda to the PPI++ closed form (`"closed_form"` mode).

        Treats the regressor as linear in its head: per-example squared-loss
        gradients of the head over the backbone features `[h(x), 1]` (exact
        for a linear student, i.e. an identity backbone), evaluated at the
        head parameters `at`: `"ppi_py"` (ppi_py's own point estimate, which
        reproduces its lhat), `"ppi_minimizer"` (the exact minimiser of the
        lambda = 1 PPI loss), `"supervised"` (labeled least squares) or
        `"current"` (the head's present weights); see
        `keras_ssr.methods.ppi_closed_form`.

        Args:
            labeled: `(x_l, y_l)`, raw features and standardised targets.
            teacher_labeled: teacher predictions on `x_l` (standardised).
            x_u: raw unlabeled features.
            teacher_u: teacher predictions on `x_u` (standardised).
            at: a name of `ppi_closed_form.CLOSED_FORM_POINTS`, or head
                parameters `(p + 1,)` (kernel then bias).

        Returns:
            The clipped lambda, also stored in `lambda_value` and
            `lambda_variable`.
        """
        x_l, y_l = labeled
        if isinstance(at, str) and at == "current":
            head = self.regressor.head
            at = np.concatenate(
                [head.kernel.numpy().ravel(), head.bias.numpy().ravel()]
            )
        lam = linear_closed_form_lambda(
            self._features(x_l),
            y_l,
            teacher_labeled,
            self._features(x_u),
            teacher_u,
            at,
        )
        self.lambda_value = lam
        self.lambda_variable.assign(lam)
        return lam

    def _features(self, x):
        return keras.ops.convert_to_numpy(self.regressor.features(x, training=False))

    def _check_calibrated(self):
        if self.lambda_value is None:
            raise ValueError(
                "lambda_mode='closed_form' needs calibrate_lambda(...) before "
                "training (or an explicit lambda_value)."
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            lambda_mode=self.lambda_mode,
            lambda_value=self.lambda_value,
            lambda_diameter=self.lambda_diameter,
            closed_form_at=self.closed_form_at,
        )
        return config


class LastValue(keras.metrics.Metric):
    """A metric whose result is the last value it was updated with.

    Under `tf.distribute` its state is averaged over replicas on read (all
    replicas hold the same value for PP-SSL's lambda).

    Args:
        name: metric name (the key in the logs).
        dtype: dtype of the stored value.

    Example:

    >>> metric = LastValue(name="lambda_step")
    >>> metric.update_state(0.3)
    >>> metric.update_state(0.7)
    >>> round(float(metric.result()), 2)
    0.7
    """

    def __init__(self, name="last_value", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(
            shape=(), initializer="zeros", name="value", aggregation="mean"
        )

    def update_state(self, value, sample_weight=None):
        self.value.assign(keras.ops.cast(keras.ops.reshape(value, ()), self.dtype))

    def result(self):
        return keras.ops.convert_to_tensor(self.value)

    def reset_state(self):
        self.value.assign(0.0)


class ProjectedAdaGrad:
    """PP-SSL's optimizer of lambda: projected 1-D AdaGrad (eq. 12).

    An optimizer-like object (`apply(grads, variables)`) for the `"lambda"`
    variable group: the gradient is d_t (`lambda_gradient`), the step
    `adagrad_lambda_step`. Its state, the sum of squared slopes, is a variable
    of the model (`accumulator`), so it is checkpointed with it.

    Args:
        accumulator: the scalar variable holding sum_s d_s^2.
        diameter: D, the diameter of [0, 1] used by the step (paper: 1).

    Example:

    >>> acc, lam = keras.Variable(0.0), keras.Variable(1.0)
    >>> ProjectedAdaGrad(acc, 1.0).apply([2.0], [lam])
    >>> round(float(lam.numpy()), 4)
    0.2929
    """

    def __init__(self, accumulator, diameter=1.0):
        self.accumulator = accumulator
        self.diameter = float(diameter)

    def apply(self, grads, variables):
        """One step of each (here: the one) lambda variable."""
        for d, lam in zip(grads, variables, strict=True):
            value, accumulator = adagrad_lambda_step(
                lam.value,
                self.accumulator.value,
                keras.ops.cast(d, lam.dtype),
                self.diameter,
            )
            self.accumulator.assign(accumulator)
            lam.assign(value)


def lambda_gradient(g_l, delta, lam):
    """d_t = 2 <g_t(lambda_t), ghat_u - ghat_l>, the slope of h_t (eq. 12).

    Under `tf.distribute` the per-replica gradients (each scaled by
    1 / replicas) are summed across replicas first, so every replica forms the
    inner product of the global mean gradients and gets the same d_t.
    """
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        g_l, delta = context.all_reduce(tf.distribute.ReduceOp.SUM, (g_l, delta))
    return 2.0 * tf.add_n(
        [tf.reduce_sum((g + lam * dg) * dg) for g, dg in zip(g_l, delta, strict=True)]
    )


def adagrad_lambda_step(lam, accumulator, d, diameter=1.0):
    """Projected 1-D AdaGrad on h_t(lambda) = ||g_t(lambda)||^2 (eq. 11-12).

    accumulator' = accumulator + d^2 (the sum over s <= t of d_s^2);
    lambda' = clip(lambda - D / sqrt(2 * accumulator') * d, 0, 1). A zero
    accumulator (no signal yet) leaves lambda unchanged.

    Args:
        lam: lambda_t.
        accumulator: sum of d_s^2 over the previous steps.
        d: d_t, the derivative of h_t at lambda_t (`lambda_gradient`).
        diameter: D, the diameter of the feasible set [0, 1].

    Returns:
        `(lambda_{t+1}, accumulator')`.

    Example:

    >>> lam, acc = adagrad_lambda_step(1.0, 0.0, 2.0)
    >>> round(float(lam), 4), float(acc)
    (0.2929, 4.0)
    """
    accumulator = accumulator + keras.ops.square(d)
    rate = tf.math.divide_no_nan(
        keras.ops.cast(diameter, accumulator.dtype),
        keras.ops.sqrt(2.0 * accumulator),
    )
    return keras.ops.clip(lam - rate * d, 0.0, 1.0), accumulator


def _zeros_for_none(grads, variables):
    return [
        tf.zeros_like(v) if g is None else g
        for g, v in zip(grads, variables, strict=True)
    ]


def _initial_lambda(mode, value):
    defaults = {"adaptive": 1.0, "fixed": 1.0, "only_labeled": 0.0}
    value = defaults.get(mode) if value is None else value
    if mode == "only_labeled" and value != 0.0:
        raise ValueError("lambda_mode='only_labeled' means lambda_value = 0.")
    if value is not None and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {value}.")
    return None if value is None else float(value)
