"""`SimRegMatch`: MC-dropout-filtered, similarity-calibrated pseudo-labels."""

import dataclasses
import random

import keras
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.hashed_dropout import global_batch_dropout
from keras_ssr.methods.replica_gather import gather_rows
from keras_ssr.methods.ssr_model import (
    SSLConfig,
    SSRModel,
    check_finite,
    mse,
)

# Dropout streams of a step: the labeled pass, the strong pass, then the T
# MC passes of the weak view; each gets its own stateless mask.
_LABELED, _STRONG, _FIRST_MC = 0, 1, 2


@dataclasses.dataclass
class SimRegMatchConfig(ConfigSection):
    """SimRegMatch's constructor arguments (see `SimRegMatch`)."""

    name = "simregmatch"
    title = "SimRegMatch (method simregmatch)"

    mc_passes: int = option(
        5,
        "T: stochastic (MC-dropout) passes of the weak view per step",
        flag="--simregmatch-passes",
        source="reference code --iter-u 5",
    )
    mc_dropout: float = option(
        0.1,
        "rate of the method's dropout before the regression head",
        flag="--simregmatch-dropout",
        source="reference code --dropout 0.1 (ResNet-50 dropout before the head)",
    )
    percentile: float = option(
        95.0,
        "keep unlabeled rows whose MC variance is below this percentile "
        "(0-100) of the previous step's variances",
        flag="--simregmatch-percentile",
        source="reference code --percentile 0.95 read as the 95th percentile "
        "(the code passes 0.95 to np.percentile: give 0.95 for that)",
    )
    temperature: float = option(
        1.0,
        "t of the softmax over cosine similarities to the labeled batch",
        flag="--simregmatch-temperature",
        source="reference code --t 1",
    )
    beta: float = option(
        0.6,
        "pseudo-label = beta * MC mean + (1 - beta) * similarity label",
        flag="--simregmatch-beta",
        source="reference code --beta 0.6",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class SimRegMatch(SSRModel):
    """SimRegMatch: uncertainty-filtered, similarity-calibrated pseudo-labels.

    The method puts a dropout layer of its own (rate `mc_dropout`) between the
    backbone features h and the regression head, as the reference ResNet-50
    does, so every training-mode prediction is `head(dropout(h(x)))`; the
    exported regressor, in inference mode, has no dropout. Each step:

    1. *MC-dropout*: T dropout draws of the head on the weak view's features
       give predictions p_1..p_T; their mean mu_j and unbiased variance
       u_j = sum_t (p_t - mu_j)^2 / (T - 1) (the uncertainty).
    2. *Calibration*: softmax weights over the cosine similarities of the
       weak features to the labeled batch's features, at temperature t, give
       a similarity label `s_j = sum_i softmax_i(cos(h_j, h_i) / t) y_i`; the
       pseudo-label is `yhat_j = beta * mu_j + (1 - beta) * s_j`.
    3. *Filtering*: row j is kept when `u_j < tau`, tau being the
       `percentile` of the previous step's variances (the first step keeps
       every row); then tau is updated from this step's variances.
    4. `L = MSE_l + lambda_t * sum_j kept_j (yhat_j - f(strong_j))^2 /
       sum_j kept_j` (0 when no row is kept), yhat fixed.

    The backbone runs once on the weak view (its features carry no gradient)
    and only the dropout and the head are sampled T times: the reference runs
    T full forward passes, but its backbone has no dropout (BatchNorm in
    training mode is deterministic given the batch), so its T feature vectors
    are identical and the pseudo-labels the same; a backbone's own dropout
    (`--dropout`) is drawn once per step here. Dropout masks are stateless,
    drawn per step for the global batch, so two replicas train exactly like
    one device; the labeled batch (for the similarities), the variances (for
    the percentile) and the kept rows (for the mean) are gathered over the
    replicas.

    Args:
        regressor: the `SSRRegressor` to train.
        mc_passes: T, the MC-dropout passes (>= 2; reference 5).
        mc_dropout: the dropout rate before the head, in (0, 1) (ref. 0.1).
        percentile: the filtering percentile, in [0, 100] (see the flag's
            source: the reference code's value is ambiguous).
        temperature: t of the similarity softmax (> 0; reference 1).
        beta: weight of the MC mean in the pseudo-label, in [0, 1] (ref. 0.6).
        seed: seed of the dropout masks (default: drawn from Python's
            `random`, which `keras.utils.set_random_seed` seeds).
        **kwargs: `SSRModel` arguments (`unlabeled_weight`, `rampup_steps`;
            the reference's lambda_u is 0.01).

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = SimRegMatch(SSRRegressor(MLPBackbone((8,))), mc_passes=5)

    References:
        Jo, Kahng & Kim, Deep semi-supervised regression via pseudo-label
        filtering and calibration, Applied Soft Computing 2024 (SimRegMatch);
        the authors' code, tasks/SimRegMatchTrainer.py.
    """

    config_sections = (SSLConfig, SimRegMatchConfig)
    loss_terms = ("loss", "labeled_loss", "unlabeled_loss", "kept_fraction")

    def __init__(
        self,
        regressor,
        mc_passes=5,
        mc_dropout=0.1,
        percentile=95.0,
        temperature=1.0,
        beta=0.6,
        seed=None,
        **kwargs,
    ):
        super().__init__(regressor, **kwargs)
        if not 2 <= int(mc_passes):
            raise ValueError(
                f"mc_passes must be >= 2 (a variance needs two passes), got "
                f"{mc_passes}."
            )
        self.mc_passes = int(mc_passes)
        self.mc_dropout = check_finite("mc_dropout", mc_dropout, low=0.0, high=1.0)
        if not 0.0 < self.mc_dropout < 1.0:
            raise ValueError(
                f"mc_dropout must be in (0, 1), got {mc_dropout}: MC-dropout "
                "needs a positive rate."
            )
        self.percentile = check_finite("percentile", percentile, low=0.0, high=100.0)
        self.temperature = check_finite(
            "temperature", temperature, low=0.0, low_open=True
        )
        self.beta = check_finite("beta", beta, low=0.0, high=1.0)
        self.seed = random.randrange(2**31) if seed is None else int(seed)

    def build_method(self, input_shape):
        # tau, the variance threshold; +inf: the first step keeps every row.
        self.threshold = self.add_weight(
            name="threshold",
            shape=(),
            initializer=keras.initializers.Constant(float("inf")),
            trainable=False,
            aggregation="none",  # every replica computes it from gathered rows
        )

    def head(self, features, stream):
        """Standardised predictions `head(dropout(features))`, with this
        step's mask number `stream` (training mode)."""
        return self.regressor.head(self.dropout(features, stream))

    def dropout(self, features, stream):
        """Inverted dropout with a stateless mask drawn for the global batch
        from (seed, step, stream); each replica takes its own rows."""
        step = tf.cast(self.optimizer.iterations, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        return global_batch_dropout(features, self.mc_dropout, seed, stream)

    def mc_predictions(self, features):
        """The T MC-dropout predictions `(batch, T)` of the weak features."""
        passes = [
            self.head(features, _FIRST_MC + t)[:, 0] for t in range(self.mc_passes)
        ]
        return keras.ops.stack(passes, axis=1)

    def compute_losses(self, batch):
        x_l, y_l = batch["labeled"]
        x_weak, x_strong = batch["unlabeled"]
        f_l = self.regressor.features(x_l, training=True)
        y_pred = self.head(f_l, _LABELED)
        terms = {"labeled_loss": mse(y_l, y_pred), "labeled_predictions": y_pred}
        f_weak = keras.ops.stop_gradient(self.regressor.features(x_weak, training=True))
        yhat, variance = calibrated_pseudo_labels(
            self.mc_predictions(f_weak),
            f_weak,
            gather_rows(keras.ops.stop_gradient(f_l)),
            gather_rows(keras.ops.cast(keras.ops.reshape(y_l, (-1,)), y_pred.dtype)),
            self.temperature,
            self.beta,
        )
        keep = keras.ops.cast(keras.ops.less(variance, self.threshold), y_pred.dtype)
        strong = self.head(self.regressor.features(x_strong, training=True), _STRONG)
        squared = (keras.ops.stop_gradient(yhat) - strong[:, 0]) ** 2
        terms["unlabeled_loss"] = kept_mean(gather_rows(squared), gather_rows(keep))
        terms["kept_fraction"] = keras.ops.mean(gather_rows(keep))
        terms["variance"] = variance
        terms["loss"] = terms["labeled_loss"] + (
            self.unlabeled_weight_now() * terms["unlabeled_loss"]
        )
        return terms

    def compute_gradients(self, batch):
        """The gradients of the loss, then tau <- the percentile of this
        step's MC variances over the global batch (used from the next step)."""
        grads, terms = super().compute_gradients(batch)
        variance = gather_rows(terms.pop("variance"))
        self.threshold.assign(percentile(variance, self.percentile))
        return grads, terms

    def get_config(self):
        config = super().get_config()
        config.update(
            mc_passes=self.mc_passes,
            mc_dropout=self.mc_dropout,
            percentile=self.percentile,
            temperature=self.temperature,
            beta=self.beta,
            seed=self.seed,
        )
        return config


def calibrated_pseudo_labels(
    mc_predictions, features, labeled_features, labeled_targets, temperature, beta
):
    """SimRegMatch's pseudo-labels and uncertainties.

    Args:
        mc_predictions: `(batch, T)` MC-dropout predictions of unlabeled rows.
        features: `(batch, d)` their features.
        labeled_features: `(n, d)` features of the labeled batch.
        labeled_targets: `(n,)` its targets.
        temperature: t of the similarity softmax.
        beta: weight of the MC mean.

    Returns:
        `(pseudo_labels, variances)`, both `(batch,)`:
        `beta * mean_t p + (1 - beta) * softmax(cos / t) @ y` and the unbiased
        variance of the T predictions.

    Example:

    >>> import numpy as np
    >>> p = np.array([[1.0, 3.0]]); f = np.array([[1.0, 0.0]])
    >>> yhat, var = calibrated_pseudo_labels(p, f, f, np.array([4.0]), 1.0, 0.5)
    >>> float(yhat[0]), float(var[0])
    (3.0, 2.0)
    """
    mc_predictions = keras.ops.convert_to_tensor(mc_predictions)
    dtype = mc_predictions.dtype
    mean = keras.ops.mean(mc_predictions, axis=1)
    passes = keras.ops.shape(mc_predictions)[1]
    variance = keras.ops.sum((mc_predictions - mean[:, None]) ** 2, axis=1) / (
        keras.ops.cast(passes, dtype) - 1.0
    )
    similarity = keras.ops.matmul(
        _unit_rows(keras.ops.cast(features, dtype)),
        keras.ops.transpose(_unit_rows(keras.ops.cast(labeled_features, dtype))),
    )
    weights = keras.ops.softmax(similarity / temperature, axis=1)
    similarity_label = keras.ops.matmul(
        weights, keras.ops.cast(labeled_targets, dtype)[:, None]
    )[:, 0]
    return beta * mean + (1.0 - beta) * similarity_label, variance


def _unit_rows(x, eps=1e-12):
    """Rows of `x` divided by their L2 norm (at least `eps`)."""
    norm = keras.ops.sqrt(keras.ops.sum(x**2, axis=1, keepdims=True))
    return x / keras.ops.maximum(norm, eps)


def kept_mean(values, keep):
    """`sum(keep * values) / sum(keep)`, 0 when nothing is kept."""
    count = keras.ops.sum(keep)
    return keras.ops.sum(keep * values) / keras.ops.maximum(count, 1.0)


def percentile(values, q):
    """The q-th percentile (0-100) of a vector, linearly interpolated
    between order statistics (NumPy's default method).

    Example:

    >>> float(percentile(tf.constant([1.0, 2.0, 3.0, 4.0]), 50.0))
    2.5
    """
    ordered = keras.ops.sort(keras.ops.reshape(values, (-1,)))
    size = keras.ops.shape(ordered)[0]
    position = q / 100.0 * keras.ops.cast(size - 1, ordered.dtype)
    low = keras.ops.cast(keras.ops.floor(position), "int32")
    high = keras.ops.minimum(low + 1, size - 1)
    fraction = position - keras.ops.cast(low, ordered.dtype)
    low_value = keras.ops.take(ordered, low)
    return low_value + (keras.ops.take(ordered, high) - low_value) * fraction
