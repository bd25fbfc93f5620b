"""`HPL`: heteroscedastic pseudo-labels with bilevel uncertainty learning."""

import dataclasses
import os

import keras
import tensorflow as tf

from keras_ssr.bilevel.head_unroll import dense_apply, read_adam_state, unroll_head
from keras_ssr.callbacks.hpl_diagnostics import HPLDiagnostics
from keras_ssr.config_section import ConfigSection, option, parse_floats
from keras_ssr.losses.heteroscedastic_loss import (
    LOSS_FORMS,
    batch_reduce,
    heteroscedastic_loss,
)
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.ssr_model import (
    SSLConfig,
    VariableGroup,
    check_choice,
    num_replicas,
)
from keras_ssr.models.uncertainty_learner import INPUT_FORMS, UncertaintyLearner

UNROLLS = ("sgd", "adam")


@dataclasses.dataclass
class HPLConfig(ConfigSection):
    """HPL's constructor arguments (see `HPL`), with their sources."""

    name = "hpl"
    title = "HPL (methods hpl, hpl_joint)"

    unroll: str = option(
        "sgd",
        "unrolled head step: sgd (paper eq. 7) or adam (reference code)",
        choices=UNROLLS,
        source="paper eq. 7 (reference code: adam)",
    )
    unroll_learning_rate: float | None = option(
        None, "step size of the unrolled step (default: the head's learning rate)"
    )
    meta_period: int = option(
        1, "bilevel step every N steps (reference: 5)", source="paper Algorithm 1"
    )
    meta_learning_rate: float = option(
        1e-4, "Adam learning rate of g_phi", source="paper Sec. 4 (1e-4)"
    )
    outer_log_variance_weight: float = option(
        0.0,
        "lambda2: outer loss adds -lambda2 * mean(g_phi) on the hold-out batch",
        source="paper silent; reference code 0.1 UTKFace, 1.0 STS-B",
    )
    loss_form: str = option(
        "reference",
        "reference: means, exp(-z)/2; paper: sums (eq. 3, 5)",
        flag="--hpl-loss-form",
        choices=LOSS_FORMS,
    )
    input_form: str = option(
        "reference",
        "g_phi input: reference [r - yhat, r] or paper (r, yhat)",
        flag="--uncertainty-input",
        choices=INPUT_FORMS,
    )
    log_variance_range: tuple = option(
        (-10.0, 10.0),
        "clamp of z = log sigma^2, as low,high (write --log-variance-range=-5,5)",
        parse=parse_floats,
    )
    head_learning_rate: float | None = option(
        None,
        "separate Adam learning rate for the head (paper: 10x the backbone's)",
        source="paper Sec. 4: 1e-3 head, 1e-4 backbone",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class HPL(PseudoLabel):
    """Heteroscedastic pseudo-labels (HPL), full method and joint ablation.

    An uncertainty learner g_phi gives the log-variance z_j of every
    pseudo-label; the regressor is trained on
    `L_inner = L_l + lambda_t * L_u(z)` (eq. 5), with `L_u` the
    uncertainty-weighted pseudo-label loss (eq. 3, see
    `heteroscedastic_loss`). With `bilevel=True` (the paper's method) phi is
    trained by the bilevel step (eq. 6-8): the regression head is unrolled one
    optimizer step on `L_inner` over stop-gradient features, differentiably in
    phi, and scored on the hold-out labeled batch; phi follows the gradient of
    that outer loss. With `bilevel=False` (ablation "UL without BLO") phi is
    trained jointly on `L_inner`, whose `+ z` term keeps z finite.

    The meta step reuses the main step's features of the labeled and strong
    unlabeled batches (stop-gradient) and adds one backbone forward of the
    hold-out batch (in inference mode: dropout off, BatchNorm moving
    statistics), plus the head-sized unroll. It runs before the theta update,
    on the head at theta_t, every `meta_period` steps. Its measured cost is in
    BENCHMARKS.md, "What does HPL's bilevel step cost?".

    Args:
        regressor: the `SSRRegressor` to train.
        bilevel: train phi by the bilevel step (True) or jointly (False).
        unroll: `"sgd"` (paper eq. 7) or `"adam"` (reference: a differentiable
            step of the head's real Adam optimizer, with its moment state).
        unroll_learning_rate: step size of the unrolled step; defaults to the
            head optimizer's learning rate.
        meta_period: run the bilevel step every this many steps (reference: 5).
        meta_learning_rate: learning rate of phi's Adam (paper: 1e-4).
        outer_log_variance_weight: lambda2; the outer loss adds
            `-lambda2 * mean(z)` of g_phi on the hold-out labeled batch.
        loss_form: `"reference"` (means, exp(-z)/2) or `"paper"` (sums).
        input_form: g_phi input, `"reference"` ([r - yhat, r]) or `"paper"`.
        hidden_units: width of g_phi's hidden layer.
        log_variance_range: clamp of z, `(low, high)`.
        head_learning_rate: if set, the head gets its own Adam with this rate
            (paper: 1e-3 head, 1e-4 backbone); else the compiled optimizer
            updates the head too.
        **kwargs: `PseudoLabel` arguments (`unlabeled_weight`, `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = HPL(SSRRegressor(MLPBackbone((8,))), meta_period=5)

    References:
        Heteroscedastic pseudo-labels with bi-level uncertainty learning for
        semi-supervised regression (HPL), NeurIPS 2025, eq. 3-8.
    """

    uses_holdout = True
    config_sections = (SSLConfig, HPLConfig)
    loss_terms = (
        "loss",
        "labeled_loss",
        "unlabeled_loss",
        "outer_loss",
        "log_variance",
    )

    def __init__(
        self,
        regressor,
        bilevel=True,
        unroll="sgd",
        unroll_learning_rate=None,
        meta_period=1,
        meta_learning_rate=1e-4,
        outer_log_variance_weight=0.0,
        loss_form="reference",
        input_form="reference",
        hidden_units=128,
        log_variance_range=(-10.0, 10.0),
        head_learning_rate=None,
        **kwargs,
    ):
        super().__init__(regressor, **kwargs)
        check_choice("unroll", unroll, UNROLLS)
        check_choice("loss_form", loss_form, LOSS_FORMS)
        if int(meta_period) < 1:
            raise ValueError(f"meta_period must be >= 1, got {meta_period}.")
        low, high = log_variance_range
        if not low < high:
            raise ValueError(
                f"log_variance_range={log_variance_range}: low must be < high."
            )
        self.bilevel = bool(bilevel)
        if not self.bilevel:  # no outer loss without the bilevel step
            self.loss_trackers.pop("outer_loss")
        self.unroll = unroll
        self.unroll_learning_rate = unroll_learning_rate
        self.meta_period = int(meta_period)
        self.meta_learning_rate = float(meta_learning_rate)
        self.outer_log_variance_weight = float(outer_log_variance_weight)
        self.loss_form = loss_form
        self.head_learning_rate = head_learning_rate
        self.uncertainty_learner = UncertaintyLearner(
            hidden_units, input_form, log_variance_range, name="uncertainty_learner"
        )

    def build_method(self, input_shape):
        self.uncertainty_learner.build([(None, 1), (None, 1)])
        self.phi_optimizer = keras.optimizers.Adam(
            self.meta_learning_rate, name="phi_adam"
        )
        self.phi_optimizer.build(self.uncertainty_learner.trainable_weights)
        self.head_optimizer = None
        if self.head_learning_rate is not None:
            self.head_optimizer = keras.optimizers.Adam(
                self.head_learning_rate, name="head_adam"
            )
            self.head_optimizer.build(self.regressor.head_params())

    def variable_groups(self):
        """`regressor` (or `backbone` + `head` with a head optimizer) and
        `phi` (g_phi, updated only on meta steps when bilevel)."""
        groups = super().variable_groups()
        if self.head_optimizer is not None:
            head = self.regressor.head_params()
            ids = {id(v) for v in head}
            theta = groups.pop("regressor").variables
            groups["backbone"] = VariableGroup(
                [w for w in theta if id(w) not in ids], self.optimizer
            )
            groups["head"] = VariableGroup(head, self.head_optimizer)
        groups["phi"] = VariableGroup(
            self.uncertainty_learner.trainable_weights,
            self.phi_optimizer,
            condition="meta_step" if self.bilevel else None,
        )
        return groups

    def callbacks(self, context):
        """`HPLDiagnostics` (g_phi's variances; with ground truth in benchmark
        mode), when there are unlabeled rows."""
        if len(context.unlabeled_x) == 0:
            return []
        return [
            HPLDiagnostics(
                os.path.join(context.log_dir, "diagnostics"),
                context.unlabeled_x,
                context.views,
                context.unlabeled_y,
            )
        ]

    def log_variance(self, predictions, pseudo_labels):
        """z = g_phi(r, yhat), the log-variance of each pseudo-label."""
        return self.uncertainty_learner((predictions, pseudo_labels))

    def forward(self, batch):
        """Features, predictions, pseudo-labels and z of one training step."""
        x_l, _ = batch["labeled"]
        x_weak, x_strong = batch["unlabeled"]
        features_l = self.regressor.features(x_l, training=True)
        features_s = self.regressor.features(x_strong, training=True)
        parts = {
            "features_l": features_l,
            "features_s": features_s,
            "pred_l": self.regressor.head(features_l),
            "r": self.regressor.head(features_s),
            "yhat": self.pseudo_labels(x_weak),
            "lam": self.unlabeled_weight_now(),
        }
        parts["z"] = self.log_variance(parts["r"], parts["yhat"])
        return parts

    def inner_loss(self, y_l, pred_l, yhat, r, z, lam):
        """L_inner = L_l + lambda * L_u (eq. 5) in the configured form."""
        y_l = keras.ops.reshape(keras.ops.cast(y_l, pred_l.dtype), (-1, 1))
        labeled = batch_reduce(keras.ops.square(y_l - pred_l), self.loss_form)
        unlabeled = heteroscedastic_loss(yhat, r, z, self.loss_form)
        return labeled + keras.ops.cast(lam, labeled.dtype) * unlabeled

    def compute_losses(self, batch):
        return self._terms(batch, self.forward(batch))

    def _terms(self, batch, parts):
        y_l = batch["labeled"][1]
        loss = self.inner_loss(
            y_l, parts["pred_l"], parts["yhat"], parts["r"], parts["z"], parts["lam"]
        )
        return {
            "loss": loss,
            "labeled_predictions": parts["pred_l"],
            "labeled_loss": keras.ops.mean(
                keras.ops.square(keras.ops.reshape(y_l, (-1, 1)) - parts["pred_l"])
            ),
            "unlabeled_loss": heteroscedastic_loss(
                parts["yhat"], parts["r"], parts["z"], self.loss_form
            ),
            "log_variance": keras.ops.mean(parts["z"]),
        }

    def compute_gradients(self, batch):
        groups = self.variable_groups()
        inner = {n: g.variables for n, g in groups.items()}
        if self.bilevel:  # phi follows the outer loss, not L_inner
            inner.pop("phi")
        with tf.GradientTape() as tape:
            parts = self.forward(batch)
            terms = self._terms(batch, parts)
            loss = terms["loss"] / num_replicas()
        grads = tape.gradient(loss, inner)
        if self.bilevel:
            is_meta = self.is_meta_step()
            grads["phi"], terms["outer_loss"] = self.meta_gradients(
                batch, parts, is_meta
            )
            terms["meta_step"] = keras.ops.cast(is_meta, loss.dtype)
        return grads, terms

    def track_losses(self, terms):
        """As the base, but `outer_loss` averages over meta steps only."""
        outer = terms.pop("outer_loss", None)
        super().track_losses(terms)
        if outer is not None:
            self.loss_trackers["outer_loss"].update_state(
                outer, sample_weight=terms["meta_step"]
            )

    def is_meta_step(self):
        """True on the steps that take a bilevel step (every `meta_period`)."""
        return tf.equal(self.optimizer.iterations % self.meta_period, 0)

    def meta_gradients(self, batch, parts, is_meta):
        """dL_outer/dphi and L_outer; zeros off meta steps on one replica.

        With several replicas the bilevel step runs every step (its all-reduce
        cannot sit inside `tf.cond`), and `apply_if` skips the update.
        """
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            return self._hypergradient(batch, parts)
        phi = self.uncertainty_learner.trainable_weights

        def skip():
            return [tf.zeros_like(v) for v in phi], tf.zeros((), parts["r"].dtype)

        return tf.cond(is_meta, lambda: self._hypergradient(batch, parts), skip)

    def _hypergradient(self, batch, parts):
        """The bilevel step (eq. 6-8): outer loss of the unrolled head, d/dphi."""
        fixed = {k: keras.ops.stop_gradient(parts[k]) for k in parts if k != "z"}
        features_h, y_h = self.holdout_features(batch, parts)
        features_h = keras.ops.stop_gradient(features_h)
        y_l = batch["labeled"][1]
        phi = self.uncertainty_learner.trainable_weights
        with tf.GradientTape() as outer:

            def inner(params):
                pred_l = dense_apply(fixed["features_l"], params)
                r = dense_apply(fixed["features_s"], params)
                z = self.log_variance(r, fixed["yhat"])
                return self.inner_loss(y_l, pred_l, fixed["yhat"], r, z, fixed["lam"])

            new_params, _ = unroll_head(
                self.regressor.head_params(), inner, **self._unroll_args()
            )
            outer_loss = self.outer_loss(features_h, y_h, new_params)
        grads = outer.gradient(outer_loss, phi)
        return [g / num_replicas() for g in grads], outer_loss

    def holdout_features(self, batch, parts):
        """`(features, targets)` of the outer batch: the hold-out stream, with
        one backbone forward in inference mode."""
        x_h, y_h = batch["holdout"]
        return self.regressor.features(x_h), y_h

    def outer_loss(self, features_h, y_h, new_params):
        """L_outer (eq. 6) on the hold-out batch, minus lambda2 * mean(z_h)."""
        y_h = keras.ops.reshape(keras.ops.cast(y_h, features_h.dtype), (-1, 1))
        loss = batch_reduce(
            keras.ops.square(y_h - dense_apply(features_h, new_params)), self.loss_form
        )
        if self.outer_log_variance_weight:
            current = dense_apply(features_h, self.regressor.head_params())
            z_h = self.log_variance(current, y_h)
            loss -= self.outer_log_variance_weight * keras.ops.mean(z_h)
        return loss

    def _unroll_args(self):
        optimizer = self.head_optimizer or self.optimizer
        rate = self.unroll_learning_rate
        if rate is None:
            rate = optimizer.learning_rate
        args = {"learning_rate": rate, "method": self.unroll}
        if self.unroll == "adam":
            args["adam_state"] = read_adam_state(
                optimizer, self.regressor.head_params()
            )
        return args

    def get_config(self):
        config = super().get_config()
        learner = self.uncertainty_learner
        config.update(
            bilevel=self.bilevel,
            unroll=self.unroll,
            unroll_learning_rate=self.unroll_learning_rate,
            meta_period=self.meta_period,
            meta_learning_rate=self.meta_learning_rate,
            outer_log_variance_weight=self.outer_log_variance_weight,
            loss_form=self.loss_form,
            input_form=learner.input_form,
            hidden_units=learner.hidden_units,
            log_variance_range=learner.log_variance_range,
            head_learning_rate=self.head_learning_rate,
        )
        return config
