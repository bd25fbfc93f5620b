"""`TemporalEnsembling`: consistency to a per-example moving average of predictions."""

import dataclasses

import keras

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.pi_model import SelfEnsembling, SelfEnsemblingConfig
from keras_ssr.methods.replica_gather import scatter_rows
from keras_ssr.methods.ssr_model import SSLConfig, check_finite


@dataclasses.dataclass
class TemporalEnsemblingConfig(ConfigSection):
    """Temporal Ensembling's setting."""

    name = "temporal_ensembling"
    title = "Temporal Ensembling (method temporal_ensembling)"

    alpha: float = option(
        0.6,
        "momentum of the per-example ensemble Z <- alpha Z + (1 - alpha) z",
        flag="--te-alpha",
        source="paper Sec. 3 and reference code prediction_decay (0.6)",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class TemporalEnsembling(SelfEnsembling):
    """Temporal Ensembling: targets from an average of past predictions.

    Every unlabeled row i has an ensemble prediction Z_i (a non-trainable
    table over the unlabeled set) and an update count t_i. Each step the
    model predicts z_i on the weak view of the batch's rows (training mode)
    and is trained towards the bias-corrected ensemble (paper Algorithm 2):

        z~_i = Z_i / (1 - alpha^t_i)                       (startup correction)
        L = MSE_l + w(t) * 1/|B| sum_{i in B, t_i > 0} (z_i - z~_i)^2.

    Then, with the same step's predictions (stop-gradient), the rows of the
    batch are accumulated: `Z_i <- alpha Z_i + (1 - alpha) z_i`,
    `t_i <- t_i + 1`. Algorithm 2 accumulates once per epoch with t = the
    epoch count; here each row is accumulated whenever it is drawn, with t_i
    its own count. When every row is drawn once per epoch (the trainer's
    stream shuffles the unlabeled set and walks through it) the two are the
    same: a row drawn in epoch e sees the predictions of its e - 1 earlier
    draws, divided by `1 - alpha^(e-1)`. A row not yet drawn has no target
    (Algorithm 2 uses z~ = 0 there, under a ramp-up weight near 0) and adds
    nothing to the sum. A constant prediction p gives z~ = p after any number
    of updates.

    Under `tf.distribute` the batch's row indices and predictions are
    gathered over the replicas before the tables are written, so every
    replica keeps the same Z (see `scatter_rows`).

    Args:
        regressor: the `SSRRegressor` to train.
        alpha: the ensemble momentum, in [0, 1) (paper: 0.6).
        num_unlabeled: the number of unlabeled rows (the tables' length); a
            trainer passes it (the method declares `uses_unlabeled_index`).
        rampup_shape: `"gaussian"` (paper) or `"linear"`, see `SelfEnsembling`.
        **kwargs: `SSRModel` arguments (`unlabeled_weight`, `rampup_steps`).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = TemporalEnsembling(
    ...     SSRRegressor(MLPBackbone((8,))), alpha=0.6, num_unlabeled=1000)
    >>> model.build((None, 3))
    >>> tuple(model.ensemble.shape)
    (1000,)

    References:
        Laine & Aila, Temporal Ensembling for Semi-Supervised Learning,
        ICLR 2017, Sec. 2.2 and Algorithm 2.
    """

    uses_unlabeled_index = True
    config_sections = (SSLConfig, SelfEnsemblingConfig, TemporalEnsemblingConfig)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss", "target_fraction")

    def __init__(self, regressor, alpha=0.6, num_unlabeled=None, **kwargs):
        super().__init__(regressor, **kwargs)
        self.alpha = check_finite("alpha", alpha, low=0.0, high=1.0)
        if self.alpha == 1.0:
            raise ValueError("alpha must be < 1: with alpha = 1 Z never moves.")
        if num_unlabeled is not None and int(num_unlabeled) < 1:
            raise ValueError(f"num_unlabeled must be >= 1, got {num_unlabeled}.")
        self.num_unlabeled = None if num_unlabeled is None else int(num_unlabeled)

    def build_method(self, input_shape):
        if self.num_unlabeled is None:
            raise ValueError(
                "TemporalEnsembling keeps one ensemble prediction per unlabeled "
                "row: pass num_unlabeled=<number of unlabeled rows> to its "
                "constructor (python -m trainers.run does)."
            )
        self.ensemble = self._table("ensemble", self.compute_dtype)
        self.update_counts = self._table("update_counts", "int32")

    def _table(self, name, dtype):
        return self.add_weight(
            name=name,
            shape=(self.num_unlabeled,),
            dtype=dtype,
            initializer="zeros",
            trainable=False,
            aggregation="none",  # every replica writes the gathered rows itself
        )

    def targets(self, index):
        """`(z~, has_target)` of the rows `index`: the bias-corrected ensemble
        Z_i / (1 - alpha^t_i), and whether t_i > 0 (else z~ = 0)."""
        ensemble = keras.ops.take(self.ensemble, index)
        counts = keras.ops.take(self.update_counts, index)
        has_target = keras.ops.greater(counts, 0)
        t = keras.ops.cast(keras.ops.maximum(counts, 1), ensemble.dtype)
        corrected = ensemble / (1.0 - keras.ops.power(self.alpha, t))
        return keras.ops.where(has_target, corrected, 0.0), has_target

    def compute_losses(self, batch):
        x_weak, _ = batch["unlabeled"]
        terms = self.labeled_terms(batch)
        z = keras.ops.reshape(self.regressor.standardized(x_weak, training=True), (-1,))
        target, has_target = self.targets(batch["unlabeled_index"])
        mask = keras.ops.cast(has_target, z.dtype)
        # Algorithm 2: w(t) * 1/|B| sum_i ||z_i - z~_i||^2 over rows with a target.
        terms["unlabeled_loss"] = keras.ops.mean(mask * (z - target) ** 2)
        terms["target_fraction"] = keras.ops.mean(mask)
        terms["unlabeled_predictions"] = keras.ops.stop_gradient(z)
        terms["loss"] = terms["labeled_loss"] + (
            self.unlabeled_weight_now() * terms["unlabeled_loss"]
        )
        return terms

    def compute_gradients(self, batch):
        """The gradients of the loss, then the ensemble update of the batch's
        rows with the step's own predictions (Algorithm 2's accumulation)."""
        grads, terms = super().compute_gradients(batch)
        self.accumulate(batch["unlabeled_index"], terms.pop("unlabeled_predictions"))
        return grads, terms

    def accumulate(self, index, predictions):
        """`Z_i <- alpha Z_i + (1 - alpha) z_i` and `t_i <- t_i + 1` for the
        rows `index` with predictions `z` (standardised units)."""
        predictions = keras.ops.cast(predictions, self.ensemble.dtype)
        ensemble = keras.ops.take(self.ensemble, index)
        counts = keras.ops.take(self.update_counts, index)
        scatter_rows(
            [self.ensemble, self.update_counts],
            index,
            [self.alpha * ensemble + (1.0 - self.alpha) * predictions, counts + 1],
        )

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, num_unlabeled=self.num_unlabeled)
        return config
