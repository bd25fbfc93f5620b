"""`L2I`: learning to impute pseudo-labels through a one-step unroll."""

import contextlib
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
from keras_ssr.methods.pseudo_label import PseudoLabel, PseudoLabelConfig
from keras_ssr.methods.ssr_model import (
    SSLConfig,
    check_choice,
    check_finite,
    mse,
    num_replicas,
)

VARIANTS = ("v1", "v2")
UNROLLS = ("full", "head")
STEPS = ("combined", "algorithm1")
UNROLL_LOSSES = ("both", "unlabeled")
_FEATURES = {"pred_l": "features_l", "pred_s": "features_s"}


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
        "eta, the unrolled SGD step (default: the optimizer's current learning "
        "rate times --l2i-unroll-rate-factor)",
        flag="--l2i-unroll-learning-rate",
        source="reference code: the learning rate (V1), 10x (V2)",
    )
    unroll_rate_factor: float = option(
        1.0,
        "without --l2i-unroll-learning-rate: eta = this factor times the "
        "optimizer's current learning rate",
        flag="--l2i-unroll-rate-factor",
        source="reference code: 1 (L2I-L), 10 (L2I-O)",
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
    step: str = option(
        "combined",
        "combined: one step on C^T + lambda C^U(z_hat) (V1) or plus the V2 "
        "gradient; algorithm1: an ordinary step to theta-hat, re-impute with "
        "theta-hat, unroll from it, then a second step on C^U(z_hat) (V1) or "
        "on the V2 gradient alone",
        flag="--l2i-step",
        choices=STEPS,
        source="paper Algorithm 1 and reference code: algorithm1",
    )
    unroll_loss: str = option(
        "both",
        "loss of the unrolled step: C^T + C^U (paper Sec. 4) or C^U alone "
        "(reference code)",
        flag="--l2i-unroll-loss",
        choices=UNROLL_LOSSES,
        source="paper Sec. 4: both; reference code: unlabeled",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class L2I(PseudoLabel):
    """Learning to impute (L2I): imputed labels tuned on a hold-out batch.

    Each step imputes `z = psi(x_u)` (the model's own weak-view prediction, or
    an EMA teacher's), takes one differentiable SGD step of the regressor on
    `C^T + C^U(z)` (eq. 3 with one step:
    `theta* = theta - eta * grad_theta(C^T + C^U(z))`, z held fixed inside the
    gradient; `unroll_loss="unlabeled"`: on `C^U(z)` alone, as the reference
    code), and scores `theta*` by the hold-out MSE `C^H(theta*)` on
    `batch["holdout"]` (OPT2). Losses are means in standardised target units:
    `C^T = mean((y_l - f(x_l))^2)`, `C^U(z) = mean((z - f(strong))^2)`.

    `step="combined"` (default) takes one optimizer step per train step:

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

    `step="algorithm1"` takes Algorithm 1's two optimizer steps per train step,
    in the reference code's order (train-L2I-L/O.py): (1) an ordinary step on
    `C^T + lambda_t * C^U(psi(x_u))` gives theta-hat; (2) z is re-imputed with
    theta-hat, `z = f_theta-hat(weak)` (the student, also with the mean-teacher
    imputer), the unroll starts from theta-hat, and a second step of the same
    optimizer follows `grad C^U(z_hat)` at theta-hat (V1, weight 1) or the V2
    gradient `(dC^H/dz)(dz/dtheta-hat)` alone (V2). The compiled optimizer then
    counts two iterations per train step: the ramp-up of lambda and a
    learning-rate schedule are counted in train steps (`build_optimizers`
    re-indexes the schedule, see `PerTrainStep`).

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
            defaults to `unroll_rate_factor` times the compiled optimizer's
            current learning rate.
        unroll_rate_factor: that factor (reference: 1 for V1, 10 for V2, on
            the decayed rate).
        imputation_learning_rate: eta_z of V1 (reference: 1 with mean losses).
        tanh_unlabeled: use `mean((tanh(z) - tanh(f(strong)))^2)` as the
            unlabeled loss inside the unroll (reference L2I-O's form).
        step: `"combined"` (one step) or `"algorithm1"` (two steps, above).
        unroll_loss: `"both"` (C^T + C^U, paper) or `"unlabeled"` (C^U,
            reference code): the loss of the unrolled step.
        ema_decay: decay of the mean-teacher imputer's EMA (paper: 0.999).
        ema_warmup: the mean-teacher imputer's decay at its t-th update is
            `min(1 - 1 / (t + 1), ema_decay)` (reference code), see
            `EMATeacher`.
        **kwargs: `PseudoLabel` arguments (`pseudo_label_mode`: also the mode
            of V2's and Algorithm 1's imputation `f(weak)`; `unlabeled_weight`,
            `rampup_steps`).

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
    config_sections = (SSLConfig, PseudoLabelConfig, MeanTeacherConfig, L2IConfig)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss", "holdout_loss")

    def __init__(
        self,
        regressor,
        variant="v1",
        imputer="pseudo_label",
        unroll="full",
        unroll_learning_rate=None,
        unroll_rate_factor=1.0,
        imputation_learning_rate=1.0,
        tanh_unlabeled=False,
        step="combined",
        unroll_loss="both",
        ema_decay=0.999,
        ema_warmup=False,
        **kwargs,
    ):
        check_choice("variant", variant, VARIANTS)
        check_choice("unroll", unroll, UNROLLS)
        check_choice("step", step, STEPS)
        check_choice("unroll_loss", unroll_loss, UNROLL_LOSSES)
        super().__init__(regressor, **kwargs)
        self.ema_decay = float(ema_decay)
        self.ema_warmup = bool(ema_warmup)
        self.imputer = make_imputer(imputer, regressor, ema_decay, ema_warmup)
        self.variant = variant
        self.imputer_name = imputer
        self.unroll = unroll
        self.unroll_learning_rate = unroll_learning_rate
        self.unroll_rate_factor = check_finite(
            "unroll_rate_factor", unroll_rate_factor, low=0.0
        )
        self.imputation_learning_rate = float(imputation_learning_rate)
        self.tanh_unlabeled = bool(tanh_unlabeled)
        self.step = step
        self.unroll_loss = unroll_loss

    @property
    def optimizer_steps(self):
        """Steps of the compiled optimizer per train step (2: Algorithm 1)."""
        return 2 if self.step == "algorithm1" else 1

    def build_optimizers(self):
        """As the base; with two optimizer steps per train step, a
        learning-rate schedule is re-indexed to count train steps."""
        if self.optimizer_steps > 1:
            rate = self.optimizer.get_config()["learning_rate"]
            if isinstance(rate, dict):  # a schedule (else a constant rate)
                schedule = keras.saving.deserialize_keras_object(rate)
                if not isinstance(schedule, PerTrainStep):
                    self.optimizer.learning_rate = PerTrainStep(
                        schedule, self.optimizer_steps
                    )
        super().build_optimizers()

    def unlabeled_weight_now(self):
        """lambda_t, its ramp-up counted in train steps."""
        if self.optimizer_steps == 1 or self.rampup_steps <= 0:
            return super().unlabeled_weight_now()
        steps = self.optimizer.iterations // self.optimizer_steps
        ramp = keras.ops.minimum(
            1.0, keras.ops.cast(steps, self.compute_dtype) / float(self.rampup_steps)
        )
        return self.unlabeled_weight * ramp

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
                parts["psi"] = self._own_imputation(x_weak)
        parts["target"], parts["z"] = self._imputations(x_weak, parts["psi"])
        return parts

    def reimputed_forward(self, batch):
        """Algorithm 1 at theta-hat: the strong (and, for `unroll_loss="both"`,
        labeled) predictions and the re-imputation `z = f_theta-hat(weak)`,
        recorded on a persistent tape (`"psi"`: z with its gradient, V2)."""
        x_l, _ = batch["labeled"]
        x_weak, x_strong = batch["unlabeled"]
        tape = tf.GradientTape(persistent=True)
        with tape:
            parts = {"tape": tape, "psi": None}
            if self.unroll_loss == "both":
                parts["features_l"] = self.regressor.features(x_l, training=True)
                parts["pred_l"] = self.regressor.head(parts["features_l"])
            parts["features_s"] = self.regressor.features(x_strong, training=True)
            parts["pred_s"] = self.regressor.head(parts["features_s"])
            v1 = self.variant == "v1"  # z needs no gradient
            with tape.stop_recording() if v1 else contextlib.nullcontext():
                psi = self._own_imputation(x_weak)
        if self.variant == "v2":
            parts["psi"] = psi
        parts["z"] = keras.ops.stop_gradient(psi)
        return parts

    def _own_imputation(self, x_weak):
        """f_theta(weak) with its gradient, in `pseudo_label_mode`."""
        return self.regressor.standardized(x_weak, training=self.pseudo_label_training)

    def _imputations(self, x_weak, psi):
        if psi is None:  # V1: the unroll starts from the imputer's labels
            z = self.pseudo_labels(x_weak)
            return z, z
        # The ordinary term's label: the imputer's (for the model's own
        # prediction, psi itself, without a second forward pass).
        target = self.imputer.labels(
            self.regressor, x_weak, own=psi, training=self.pseudo_label_training
        )
        return target, keras.ops.stop_gradient(psi)

    def inner_loss(self, pred_l, pred_s, y_l, z):
        """The loss of the unrolled step: C^T + C^U(z) (eq. 3, lambda = 1), or
        C^U(z) alone with `unroll_loss="unlabeled"` (`pred_l` unused)."""
        if self.tanh_unlabeled:  # reference L2I-O
            unlabeled = keras.ops.mean(
                keras.ops.square(keras.ops.tanh(z) - keras.ops.tanh(pred_s))
            )
        else:
            unlabeled = mse(z, pred_s)
        if self.unroll_loss == "unlabeled":  # reference code
            return unlabeled
        return mse(y_l, pred_l) + unlabeled

    def unrolled_holdout_loss(self, batch, parts, z):
        """C^H(theta*(z)) (OPT2), differentiable in `z` inside a tape watching it.

        `parts` comes from `forward(batch)` (or `reimputed_forward`); `z` is
        the imputation of its unlabeled batch (any value, e.g. `parts["z"]` or
        a perturbed copy).
        """
        x_h, y_h = batch["holdout"]
        if self.unroll == "head":
            predictions = self._head_unroll(batch, parts, z, x_h)
        else:
            predictions = self._full_unroll(batch, parts, z, x_h)
        return mse(y_h, predictions)

    def _unrolled_inputs(self):
        """Names of the predictions the unrolled step's loss reads."""
        if self.unroll_loss == "unlabeled":
            return ("pred_s",)
        return ("pred_l", "pred_s")

    def _inner_of(self, named, y_l, z):
        return self.inner_loss(named.get("pred_l"), named["pred_s"], y_l, z)

    def _head_unroll(self, batch, parts, z, x_h):
        features = {
            n: keras.ops.stop_gradient(parts[_FEATURES[n]])
            for n in self._unrolled_inputs()
        }
        y_l = batch["labeled"][1]

        def inner(params):
            named = {n: dense_apply(f, params) for n, f in features.items()}
            return self._inner_of(named, y_l, z)

        new_head, _ = unroll_head(
            self.regressor.head_params(), inner, learning_rate=self._unroll_rate()
        )
        with keras.StatelessScope():  # training mode, moving stats untouched
            features_h = self.regressor.features(x_h, training=True)
        return dense_apply(keras.ops.stop_gradient(features_h), new_head)

    def _full_unroll(self, batch, parts, z, x_h):
        theta = self.regressor.trainable_weights
        names = self._unrolled_inputs()
        predictions = [parts[n] for n in names]
        with tf.GradientTape() as tape:
            tape.watch(predictions)
            loss = self._inner_of(
                dict(zip(names, predictions, strict=True)), batch["labeled"][1], z
            )
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
        if self.step == "algorithm1":  # step 1's terms; the unroll at theta
            terms = PseudoLabel.compute_losses(self, batch)
            parts = self.reimputed_forward(batch)
        else:
            parts = self.forward(batch)
        imputation_grad, holdout_loss = self.imputation_gradient(batch, parts)
        if self.step != "algorithm1":
            terms = self._terms(batch, parts, imputation_grad)
        terms["holdout_loss"] = holdout_loss
        return terms

    def compute_gradients(self, batch):
        if self.step == "algorithm1":
            return self._algorithm1_gradients(batch)
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

    def _algorithm1_gradients(self, batch):
        """Algorithm 1: applies step 1 (to theta-hat) now; returns step 2's
        gradient for the base class to apply with the same optimizer."""
        theta = self.regressor.trainable_weights
        with tf.GradientTape() as tape:  # C^T + lambda_t C^U(psi(x_u))
            terms = PseudoLabel.compute_losses(self, batch)
            loss = terms["loss"] / num_replicas()
        self.optimizer.apply(tape.gradient(loss, theta), theta)  # -> theta-hat
        parts = self.reimputed_forward(batch)
        imputation_grad, terms["holdout_loss"] = self.imputation_gradient(batch, parts)
        if self.variant == "v1":  # grad C^U(z_hat) at theta-hat, weight 1
            z_hat = parts["z"] - self.imputation_learning_rate * imputation_grad
            pred_s = parts["pred_s"]
            with tf.GradientTape() as small:
                small.watch(pred_s)
                unlabeled = mse(z_hat, pred_s) / num_replicas()
            outputs, upstream = pred_s, small.gradient(unlabeled, pred_s)
        else:  # the V2 gradient alone, not divided by R (see compute_gradients)
            outputs, upstream = parts["psi"], imputation_grad
        grads = parts["tape"].gradient(outputs, theta, output_gradients=upstream)
        return {"regressor": grads}, terms

    def _unroll_rate(self):
        if self.unroll_learning_rate is not None:
            return self.unroll_learning_rate
        if self.unroll_rate_factor == 1.0:
            return self.optimizer.learning_rate
        return self.unroll_rate_factor * self.optimizer.learning_rate

    def get_config(self):
        config = super().get_config()
        config.update(
            variant=self.variant,
            imputer=self.imputer_name,
            ema_decay=self.ema_decay,
            ema_warmup=self.ema_warmup,
            unroll=self.unroll,
            unroll_learning_rate=self.unroll_learning_rate,
            unroll_rate_factor=self.unroll_rate_factor,
            imputation_learning_rate=self.imputation_learning_rate,
            tanh_unlabeled=self.tanh_unlabeled,
            step=self.step,
            unroll_loss=self.unroll_loss,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ssr")
class PerTrainStep(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule counted in train steps for an optimizer stepping `n` times
    per train step: `schedule(iterations // n)`.

    Args:
        schedule: a `LearningRateSchedule` (counted in train steps).
        steps: optimizer steps per train step.

    Example:

    >>> decay = keras.optimizers.schedules.ExponentialDecay(1.0, 1, 0.5)
    >>> float(PerTrainStep(decay, 2)(3))  # train step 1
    0.5
    """

    def __init__(self, schedule, steps):
        self.schedule = schedule
        self.steps = int(steps)

    def __call__(self, step):
        return self.schedule(step // self.steps)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "steps": self.steps,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
