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
from keras_ssr.methods.conditional_apply import apply_if
from keras_ssr.methods.pseudo_label import PseudoLabel, PseudoLabelConfig
from keras_ssr.methods.ssr_model import (
    SSLConfig,
    VariableGroup,
    check_choice,
    check_finite,
    num_replicas,
)
from keras_ssr.models.uncertainty_learner import INPUT_FORMS, UncertaintyLearner
from keras_ssr.optimizers.adam_l2 import AdamL2

UNROLLS = ("sgd", "adam")
HOLDOUT_MODES = ("inference", "training")
META_ORDERS = ("simultaneous", "phi_first")


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
    meta_weight_decay: float = option(
        0.0,
        "L2 coefficient added to g_phi's gradient before its Adam step "
        "(coupled, torch's weight_decay)",
        source="reference code: 0 UTKFace and IMDB-WIKI, 1e-5 STS-B",
    )
    meta_lr_decay: bool = option(
        False,
        "g_phi's learning rate follows the compiled optimizer's schedule "
        "(--lr-decay-epochs), scaled to --meta-learning-rate",
        source="reference code: UTKFace and IMDB-WIKI decay g_phi's rate too",
    )
    meta_order: str = option(
        "simultaneous",
        "simultaneous: theta's step uses g_phi before the meta step (paper "
        "Algorithm 1); phi_first: on meta steps g_phi steps first and theta's "
        "step uses the new g_phi (reference code)",
        flag="--hpl-meta-order",
        choices=META_ORDERS,
    )
    outer_log_variance_weight: float = option(
        0.0,
        "lambda2: outer loss adds -lambda2 * mean(g_phi) on the hold-out batch "
        "(g_phi on [W'f - y, W'f], the head after the unrolled step)",
        source="paper silent; reference code 0.1 UTKFace, 1.0 STS-B",
    )
    holdout_mode: str = option(
        "inference",
        "compute the hold-out batch's features in inference or training mode "
        "(dropout, BatchNorm batch statistics)",
        flag="--hpl-holdout-mode",
        choices=HOLDOUT_MODES,
        source="reference code: training mode",
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
        "the head's own optimizer (a copy of the compiled one: Adam, L2, "
        "schedule) with this learning rate (paper: 10x the backbone's)",
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
    hold-out batch (in inference mode by default: dropout off, BatchNorm
    moving statistics; `holdout_mode="training"` as the reference), plus the
    head-sized unroll. It unrolls the head at theta_t, every `meta_period`
    steps. With `meta_order="simultaneous"` (paper Algorithm 1) theta's step
    uses g_phi before the meta step; with `"phi_first"` (reference code) g_phi
    is updated first and theta's step weights the pseudo-labels with the new
    g_phi. Its measured cost is in BENCHMARKS.md, "What does HPL's bilevel
    step cost?".

    The outer loss (eq. 6) is the hold-out MSE of the unrolled head W'; with
    `outer_log_variance_weight` = lambda2 > 0 it adds, as the reference code,
    `-lambda2 * mean_k g_phi(W' f_k, y_k)` on the hold-out batch (g_phi's
    inputs stop-gradient, so this term's gradient reaches phi only through
    g_phi's own weights).

    Args:
        regressor: the `SSRRegressor` to train.
        bilevel: train phi by the bilevel step (True) or jointly (False).
        unroll: `"sgd"` (paper eq. 7) or `"adam"` (reference: a differentiable
            step of the head's real Adam optimizer, with its moment state and
            its coupled L2 when it is an `AdamL2`).
        unroll_learning_rate: step size of the unrolled step; defaults to the
            head optimizer's current learning rate (a schedule's value).
        meta_period: run the bilevel step every this many steps (reference: 5).
        meta_learning_rate: learning rate of phi's Adam (paper: 1e-4).
        meta_weight_decay: coupled L2 coefficient of phi's Adam (`AdamL2`;
            reference: 1e-5 on STS-B, 0 on images).
        meta_lr_decay: phi's learning rate follows the compiled optimizer's
            learning-rate schedule (scaled to `meta_learning_rate`), as the
            reference's step decay of all three optimizers on images.
        meta_order: `"simultaneous"` (paper) or `"phi_first"` (reference).
        outer_log_variance_weight: lambda2; the outer loss adds
            `-lambda2 * mean(z)` of g_phi on the hold-out labeled batch, with
            the head after the unrolled step (reference code).
        holdout_mode: `"inference"` or `"training"` (reference): the mode of
            the hold-out batch's backbone forward. A training-mode forward
            also updates BatchNorm moving statistics, as the reference's does.
        loss_form: `"reference"` (means, exp(-z)/2) or `"paper"` (sums).
        input_form: g_phi input, `"reference"` ([r - yhat, r]) or `"paper"`.
        hidden_units: width of g_phi's hidden layer.
        log_variance_range: clamp of z, `(low, high)`.
        head_learning_rate: if set, the head gets its own optimizer, built by
            `build_optimizers` after `compile` as a copy of the compiled one
            (class and config: Adam, `AdamL2`'s L2, a schedule stays a
            schedule) with this (initial) learning rate; reference: torch Adam
            param groups 1e-3 head, 1e-4 backbone, one weight decay and one
            step decay. Else the compiled optimizer updates the head too.
        **kwargs: `PseudoLabel` arguments (`pseudo_label_mode`,
            `unlabeled_weight`, `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = HPL(SSRRegressor(MLPBackbone((8,))), meta_period=5)

    References:
        Heteroscedastic pseudo-labels with bi-level uncertainty learning for
        semi-supervised regression (HPL), NeurIPS 2025, eq. 3-8.
    """

    uses_holdout = True
    config_sections = (SSLConfig, PseudoLabelConfig, HPLConfig)
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
        meta_weight_decay=0.0,
        meta_lr_decay=False,
        meta_order="simultaneous",
        outer_log_variance_weight=0.0,
        holdout_mode="inference",
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
        check_choice("meta_order", meta_order, META_ORDERS)
        check_choice("holdout_mode", holdout_mode, HOLDOUT_MODES)
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
        self.meta_weight_decay = check_finite(
            "meta_weight_decay", meta_weight_decay, low=0.0
        )
        self.meta_lr_decay = bool(meta_lr_decay)
        self.meta_order = meta_order
        self.outer_log_variance_weight = float(outer_log_variance_weight)
        self.holdout_mode = holdout_mode
        self.loss_form = loss_form
        if head_learning_rate is not None:
            head_learning_rate = check_finite(
                "head_learning_rate", head_learning_rate, low=0.0, low_open=True
            )
        self.head_learning_rate = head_learning_rate
        self.uncertainty_learner = UncertaintyLearner(
            hidden_units, input_form, log_variance_range, name="uncertainty_learner"
        )

    def build_method(self, input_shape):
        self.uncertainty_learner.build([(None, 1), (None, 1)])
        self.phi_optimizer = self._phi_optimizer(self.meta_learning_rate)
        self.phi_optimizer.build(self.uncertainty_learner.trainable_weights)
        self.head_optimizer = None  # built by build_optimizers (after compile)

    def _phi_optimizer(self, learning_rate):
        if self.meta_weight_decay:  # torch's coupled weight_decay
            return AdamL2(learning_rate, l2=self.meta_weight_decay, name="phi_adam")
        return keras.optimizers.Adam(learning_rate, name="phi_adam")

    def build_optimizers(self):
        """Builds the compiled optimizer and the ones that follow its config.

        With `head_learning_rate`, the head's optimizer is a copy of the
        compiled optimizer (its class and config: `AdamL2`'s L2, a schedule
        stays a schedule) with the head's learning rate; with `meta_lr_decay`
        g_phi's Adam gets the compiled schedule scaled to `meta_learning_rate`.
        Call after `compile`, under the strategy scope.
        """
        if self.head_learning_rate is not None:
            self.head_optimizer = clone_optimizer(
                self.optimizer, self.head_learning_rate, name="head_optimizer"
            )
            self.head_optimizer.build(self.regressor.head_params())
        if self.meta_lr_decay:
            rate = scaled_learning_rate(self.optimizer, self.meta_learning_rate)
            self.phi_optimizer = self._phi_optimizer(rate)
            self.phi_optimizer.build(self.uncertainty_learner.trainable_weights)
        super().build_optimizers()

    @property
    def phi_first(self):
        """True when g_phi's meta step is applied before theta's gradient."""
        return self.bilevel and self.meta_order == "phi_first"

    def variable_groups(self):
        """`regressor` (or `backbone` + `head` with a head optimizer) and
        `phi` (g_phi, updated only on meta steps when bilevel; absent with
        `meta_order="phi_first"`, whose phi step is taken inside
        `compute_gradients`)."""
        groups = super().variable_groups()
        if self.head_learning_rate is not None:
            if self.head_optimizer is None:
                raise RuntimeError(
                    "HPL(head_learning_rate=...) builds the head's optimizer "
                    "from the compiled one: call model.build_optimizers() "
                    "after model.compile()."
                )
            head = self.regressor.head_params()
            ids = {id(v) for v in head}
            theta = groups.pop("regressor").variables
            groups["backbone"] = VariableGroup(
                [w for w in theta if id(w) not in ids], self.optimizer
            )
            groups["head"] = VariableGroup(head, self.head_optimizer)
        if self.phi_first:
            return groups
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
                unlabeled_groups=context.unlabeled_groups,
                group_names=context.group_names,
            )
        ]

    def log_variance(self, predictions, pseudo_labels):
        """z = g_phi(r, yhat), the log-variance of each pseudo-label."""
        return self.uncertainty_learner((predictions, pseudo_labels))

    def forward(self, batch, log_variance=True):
        """Features, predictions, pseudo-labels and z of one training step
        (without z if `log_variance` is False)."""
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
        if log_variance:
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
            inner.pop("phi", None)
        with tf.GradientTape() as tape:
            parts = self.forward(batch, log_variance=not self.phi_first)
            if self.phi_first:  # reference order: phi's step, then theta's
                with tape.stop_recording():
                    is_meta = self.is_meta_step()
                    outer = self._phi_step(batch, parts, is_meta)
                parts["z"] = self.log_variance(parts["r"], parts["yhat"])
            terms = self._terms(batch, parts)
            loss = terms["loss"] / num_replicas()
        grads = tape.gradient(loss, inner)
        if self.bilevel:
            if not self.phi_first:
                is_meta = self.is_meta_step()
                grads["phi"], outer = self.meta_gradients(batch, parts, is_meta)
            terms["outer_loss"] = outer
            terms["meta_step"] = keras.ops.cast(is_meta, loss.dtype)
        return grads, terms

    def _phi_step(self, batch, parts, is_meta):
        """Applies the meta step's phi update now (`meta_order="phi_first"`);
        returns L_outer."""
        grads, outer = self.meta_gradients(batch, parts, is_meta)
        phi = self.uncertainty_learner.trainable_weights
        apply_if(self.phi_optimizer, is_meta, grads, phi)
        return outer

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
        one backbone forward in `holdout_mode`."""
        x_h, y_h = batch["holdout"]
        training = self.holdout_mode == "training"
        return self.regressor.features(x_h, training=training), y_h

    def outer_loss(self, features_h, y_h, new_params):
        """L_outer (eq. 6) on the hold-out batch, minus lambda2 * mean(z_h).

        z_h = g_phi(W' f_h, y_h) with the unrolled head W' (the reference
        code's `unc_learner([preds - y, preds])` after `diffopt.step`), a mean
        in both loss forms (the paper has no lambda2 term).
        """
        y_h = keras.ops.reshape(keras.ops.cast(y_h, features_h.dtype), (-1, 1))
        predictions = dense_apply(features_h, new_params)
        loss = batch_reduce(keras.ops.square(y_h - predictions), self.loss_form)
        if self.outer_log_variance_weight:
            z_h = self.log_variance(predictions, y_h)
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
            meta_weight_decay=self.meta_weight_decay,
            meta_lr_decay=self.meta_lr_decay,
            meta_order=self.meta_order,
            outer_log_variance_weight=self.outer_log_variance_weight,
            holdout_mode=self.holdout_mode,
            loss_form=self.loss_form,
            input_form=learner.input_form,
            hidden_units=learner.hidden_units,
            log_variance_range=learner.log_variance_range,
            head_learning_rate=self.head_learning_rate,
        )
        return config


def scaled_learning_rate(optimizer, learning_rate):
    """`optimizer`'s learning rate with its initial value set to `learning_rate`.

    A constant rate becomes `learning_rate`; a schedule is copied with its
    `initial_learning_rate` replaced (every value scaled by
    `learning_rate / initial`), so a step decay stays a step decay.

    Raises:
        ValueError: for a schedule without an `initial_learning_rate`.
    """
    rate = optimizer.get_config()["learning_rate"]
    if not isinstance(rate, dict):  # a constant rate
        return learning_rate
    schedule = keras.saving.deserialize_keras_object(rate)
    config = schedule.get_config()
    if "initial_learning_rate" not in config:
        raise ValueError(
            f"The compiled optimizer's learning-rate schedule {schedule!r} has "
            "no initial_learning_rate to scale for HPL's head or g_phi; compile "
            "with a constant rate or a schedule that has one (ExponentialDecay)."
        )
    config["initial_learning_rate"] = learning_rate
    return type(schedule).from_config(config)


def clone_optimizer(optimizer, learning_rate, name):
    """A new optimizer of `optimizer`'s class and config with another
    (initial) learning rate (see `scaled_learning_rate`), unbuilt.

    Example:

    >>> compiled = AdamL2(1e-4, l2=1e-3)
    >>> head = clone_optimizer(compiled, 1e-3, name="head_optimizer")
    >>> type(head).__name__, head.l2
    ('AdamL2', 0.001)
    """
    config = optimizer.get_config()
    config.update(
        name=name, learning_rate=scaled_learning_rate(optimizer, learning_rate)
    )
    return type(optimizer).from_config(config)
