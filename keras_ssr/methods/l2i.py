"""`L2I`: learning to impute pseudo-labels through a one-step unroll."""

import dataclasses

import keras
import tensorflow as tf

from keras_ssr.bilevel.head_unroll import (
    dense_apply,
    mean_across_replicas,
    sgd_step,
    unroll_head,
)
from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.imputers import IMPUTERS, make_imputer
from keras_ssr.methods.mean_teacher import MeanTeacherConfig
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.ssr_model import SSLConfig, check_choice, mse, num_replicas

VARIANTS = ("v1", "v2")
UNROLLS = ("full", "head")


@dataclasses.dataclass
class L2IConfig(ConfigSection):
    """L2I's constructor arguments (see `L2I`), with their sources."""

    name = "l2i"
    title = "L2I (methods l2i_v1, l2i_v2)"

    imputer: str = option(
        "pseudo_label",
        "psi: the imputing function",
        flag="--l2i-imputer",
        aliases=("--imputer",),
        choices=IMPUTERS,
    )
    unroll: str = option(
        "full",
        "unroll every trainable weight (paper) or only the head (cheap)",
        flag="--l2i-unroll",
        choices=UNROLLS,
        source="paper Algorithm 1 (full)",
    )
    unroll_learning_rate: float | None = option(
        None,
        "eta, the unrolled SGD step (default: the optimizer's learning rate)",
        flag="--l2i-unroll-learning-rate",
        source="reference code: the learning rate (V1), 10x (V2)",
    )
    imputation_learning_rate: float = option(
        1.0,
        "eta_z, V1's step on the imputed labels",
        source="reference code L2I-L (1 with mean losses)",
    )
    tanh_unlabeled: bool = option(
        False,
        "V2 reference form: tanh on both sides of the unlabeled loss",
        flag="--l2i-tanh-unlabeled",
        source="reference code L2I-O",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class L2I(PseudoLabel):
    """Learning to impute (L2I): imputed labels tuned on a hold-out batch.

    Each step imputes `z = psi(x_u)` (the model's own weak-view prediction, or
    an EMA teacher's), takes one differentiable SGD step of the regressor on
    `C^T + C^U(z)` (eq. 3 with one step:
    `theta* = theta - eta * grad_theta(C^T + C^U(z))`, z held fixed inside the
    gradient), and scores `theta*` by the hold-out MSE `C^H(theta*)` on
    `batch["holdout"]` (OPT2). Losses are means in standardised target units:
    `C^T = mean((y_l - f(x_l))^2)`, `C^U(z) = mean((z - f(strong))^2)`.

    - `variant="v1"` (eq. V1, reference L2I-L): the imputed labels move one step
      down the hold-out loss, `z_hat = z - eta_z * dC^H/dz` (eq. 10), and theta
      is trained on `C^T + lambda_t * C^U(z_hat)` with `z_hat` fixed.
    - `variant="v2"` (eq. V2, reference L2I-O): theta is trained on
      `C^T + lambda_t * C^U(z)` (z fixed) plus the hold-out gradient through the
      imputer, `(dC^H/dz) (dz/dtheta)` with `z = f_theta(weak)`. With
      `imputer="mean_teacher"` the teacher is an EMA and is not trained, so the
      imputer whose parameters get this gradient is the student: the ordinary
      term uses the teacher's labels, while the unroll imputes with the
      student's own weak-view prediction, as the reference L2I-O does (its meta
      step imputes with the trained model, not its EMA target model). The
      teacher inherits the improvement through its moving average.

    `unroll="full"` (the paper) unrolls every trainable weight of the
    regressor; the step's one forward pass is recorded on a persistent tape
    and reused for the inner gradient, and `theta*` is evaluated functionally
    (`keras.StatelessScope`, the mechanism of `Layer.stateless_call`) in
    training mode, so no variable is assigned and BatchNorm moving statistics
    are not touched by the unroll. `unroll="head"` (cheaper, as HPL) unrolls
    only the Dense head over stop-gradient features. Under `tf.distribute`,
    the inner gradients are MEAN-all-reduced before forming `theta*`, so every
    replica unrolls the global batch's step.

    The hold-out batch is scored with `training=True` (BatchNorm batch
    statistics, dropout active), as the reference does.

    Args:
        regressor: the `SSRRegressor` to train.
        variant: `"v1"` (update the imputed labels) or `"v2"` (update the
            imputing model).
        imputer: `"pseudo_label"` (the model on the weak view) or
            `"mean_teacher"` (an EMA teacher on the weak view).
        unroll: `"full"` (every trainable regressor weight) or `"head"`.
        unroll_learning_rate: eta, the step size of the unrolled SGD step;
            defaults to the compiled optimizer's learning rate (reference: the
            learning rate for V1, 10x for V2).
        imputation_learning_rate: eta_z of V1 (reference: 1 with mean losses).
        tanh_unlabeled: use `mean((tanh(z) - tanh(f(strong)))^2)` as the
            unlabeled loss inside the unroll (reference L2I-O's form).
        ema_decay: decay of the mean-teacher imputer's EMA (paper: 0.999).
        **kwargs: `SSRModel` arguments (`unlabeled_weight`, `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = L2I(SSRRegressor(MLPBackbone((8,))), variant="v1", unroll="head")

    References:
        Learning to impute: a general framework for semi-supervised learning
        (L2I), Algorithm 1, eq. 3, V1, V2 and Appendix B.2 (eq. 9-11);
        reference code WeiHongLee/Learning-to-impute (train-L2I-L/O.py).
    """

    uses_holdout = True
    config_sections = (SSLConfig, MeanTeacherConfig, L2IConfig)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss", "holdout_loss")

    def __init__(
        self,
        regressor,
        variant="v1",
        imputer="pseudo_label",
        unroll="full",
        unroll_learning_rate=None,
        imputation_learning_rate=1.0,
        tanh_unlabeled=False,
        ema_decay=0.999,
        **kwargs,
    ):
        check_choice("variant", variant, VARIANTS)
        check_choice("unroll", unroll, UNROLLS)
        super().__init__(regressor, **kwargs)
        self.ema_decay = float(ema_decay)
        self.imputer = make_imputer(imputer, regressor, ema_decay)
        self.variant = variant
        self.imputer_name = imputer
        self.unroll = unroll
        self.unroll_learning_rate = unroll_learning_rate
        self.imputation_learning_rate = float(imputation_learning_rate)
        self.tanh_unlabeled = bool(tanh_unlabeled)

    # ---- one step ----

    def forward(self, batch):
        """The step's predictions, recorded on a persistent tape for reuse.

        Returns a dict with the tape (`"tape"`), features and predictions of
        the labeled and strong batches, `"psi"` (V2: the differentiable
        weak-view prediction f_theta(weak)), `"target"` (the stop-gradient
        label of the ordinary unlabeled loss), `"z"` (the stop-gradient
        imputation the unroll starts from) and `"lam"` (lambda_t).
        """
        x_l, _ = batch["labeled"]
        x_weak, x_strong = batch["unlabeled"]
        tape = tf.GradientTape(persistent=True)
        with tape:
            features_l = self.regressor.features(x_l, training=True)
            features_s = self.regressor.features(x_strong, training=True)
            parts = {
                "tape": tape,
                "features_l": features_l,
                "features_s": features_s,
                "pred_l": self.regressor.head(features_l),
                "pred_s": self.regressor.head(features_s),
                "psi": None,
                "lam": self.unlabeled_weight_now(),
            }
            if self.variant == "v2":  # z = psi_theta(x_u), eq. V2
                parts["psi"] = self.regressor.standardized(x_weak, training=False)
        parts["target"], parts["z"] = self._imputations(x_weak, parts["psi"])
        return parts

    def _imputations(self, x_weak, psi):
        if psi is None:  # V1: the unroll starts from the imputer's labels
            z = self.pseudo_labels(x_weak)
            return z, z
        # The ordinary term's label: the imputer's (for the model's own
        # prediction, psi itself, without a second forward pass).
        return self.imputer.labels(self.regressor, x_weak, own=psi), (
            keras.ops.stop_gradient(psi)
        )

    def inner_loss(self, pred_l, pred_s, y_l, z):
        """C^T + C^U(z), the loss of the unrolled step (eq. 3, lambda = 1)."""
        if self.tanh_unlabeled:  # reference L2I-O
            unlabeled = keras.ops.mean(
                keras.ops.square(keras.ops.tanh(z) - keras.ops.tanh(pred_s))
            )
        else:
            unlabeled = mse(z, pred_s)
        return mse(y_l, pred_l) + unlabeled

    def unrolled_holdout_loss(self, batch, parts, z):
        """C^H(theta*(z)) (OPT2), differentiable in `z` inside a tape watching it.

        `parts` comes from `forward(batch)`; `z` is the imputation of its
        unlabeled batch (any value, e.g. `parts["z"]` or a perturbed copy).
        """
        x_h, y_h = batch["holdout"]
        if self.unroll == "head":
            predictions = self._head_unroll(batch, parts, z, x_h)
        else:
            predictions = self._full_unroll(batch, parts, z, x_h)
        return mse(y_h, predictions)

    def _head_unroll(self, batch, parts, z, x_h):
        f_l = keras.ops.stop_gradient(parts["features_l"])
        f_s = keras.ops.stop_gradient(parts["features_s"])
        y_l = batch["labeled"][1]

        def inner(params):
            return self.inner_loss(
                dense_apply(f_l, params), dense_apply(f_s, params), y_l, z
            )

        new_head, _ = unroll_head(
            self.regressor.head_params(), inner, learning_rate=self._unroll_rate()
        )
        with keras.StatelessScope():  # training mode, moving stats untouched
            features_h = self.regressor.features(x_h, training=True)
        return dense_apply(keras.ops.stop_gradient(features_h), new_head)

    def _full_unroll(self, batch, parts, z, x_h):
        theta = self.regressor.trainable_weights
        predictions = [parts["pred_l"], parts["pred_s"]]
        with tf.GradientTape() as tape:
            tape.watch(predictions)
            loss = self.inner_loss(*predictions, batch["labeled"][1], z)
        upstream = tape.gradient(loss, predictions)
        # grad_theta(C^T + C^U(z)) by the chain rule through the step's forward
        # (reused): a function of z for any enclosing tape.
        grads = parts["tape"].gradient(
            predictions,
            theta,
            output_gradients=upstream,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        grads = mean_across_replicas(grads)
        # theta* = theta - eta * grad (eq. 3, one SGD step), never assigned.
        new_theta = sgd_step(theta, grads, self._unroll_rate())
        with keras.StatelessScope(list(zip(theta, new_theta, strict=True))):
            return self.regressor.standardized(x_h, training=True)

    def imputation_gradient(self, batch, parts):
        """`(dC^H/dz, C^H(theta*))` for this replica's z (eq. V1).

        With R replicas, the MEAN all-reduce inside the unroll makes the tape
        return the gradient of `sum_r C^H_r`, R times that of the global
        hold-out loss; dividing by R gives one device's value.
        """
        z = parts["z"]
        with tf.GradientTape(watch_accessed_variables=False) as hyper:
            hyper.watch(z)
            holdout_loss = self.unrolled_holdout_loss(batch, parts, z)
        grad = hyper.gradient(holdout_loss, z)
        return grad / keras.ops.cast(num_replicas(), grad.dtype), holdout_loss

    def _terms(self, batch, parts, imputation_grad):
        target = parts["target"]
        if self.variant == "v1":  # z_hat = z - eta_z dC^H/dz (eq. 10), fixed
            target = target - self.imputation_learning_rate * imputation_grad
        labeled = mse(batch["labeled"][1], parts["pred_l"])
        unlabeled = mse(target, parts["pred_s"])
        lam = keras.ops.cast(parts["lam"], labeled.dtype)
        return {
            "loss": labeled + lam * unlabeled,
            "labeled_loss": labeled,
            "unlabeled_loss": unlabeled,
            "labeled_predictions": parts["pred_l"],
        }

    def compute_losses(self, batch):
        parts = self.forward(batch)
        imputation_grad, holdout_loss = self.imputation_gradient(batch, parts)
        terms = self._terms(batch, parts, imputation_grad)
        terms["holdout_loss"] = holdout_loss
        return terms

    def compute_gradients(self, batch):
        theta = self.regressor.trainable_weights
        parts = self.forward(batch)
        imputation_grad, holdout_loss = self.imputation_gradient(batch, parts)
        predictions = [parts["pred_l"], parts["pred_s"]]
        with tf.GradientTape() as tape:
            tape.watch(predictions)
            terms = self._terms(batch, parts, imputation_grad)
            loss = terms["loss"] / num_replicas()
        outputs = predictions
        upstream = tape.gradient(loss, predictions)
        if self.variant == "v2":
            # + (dC^H/dz)(dpsi/dtheta) (eq. V2). Not divided by R: the optimizer
            # sums the replicas' J_r^T g_r, which is the global J^T g.
            outputs = outputs + [parts["psi"]]
            upstream = upstream + [imputation_grad]
        grads = parts["tape"].gradient(outputs, theta, output_gradients=upstream)
        terms["holdout_loss"] = holdout_loss
        return {"regressor": grads}, terms

    def _unroll_rate(self):
        if self.unroll_learning_rate is not None:
            return self.unroll_learning_rate
        return self.optimizer.learning_rate

    def get_config(self):
        config = super().get_config()
        config.update(
            variant=self.variant,
            imputer=self.imputer_name,
            ema_decay=self.ema_decay,
            unroll=self.unroll,
            unroll_learning_rate=self.unroll_learning_rate,
            imputation_learning_rate=self.imputation_learning_rate,
            tanh_unlabeled=self.tanh_unlabeled,
        )
        return config
