"""`SSDKL`: semi-supervised deep kernel learning (GP on learned features)."""

import dataclasses

import keras
import tensorflow as tf

from keras_ssr.config_section import ConfigSection, option
from keras_ssr.methods.labeled_anchors import PredictsFromAnchors
from keras_ssr.methods.replica_gather import gather_rows, local_rows
from keras_ssr.methods.ssr_model import SSRModel, VariableGroup, check_finite
from keras_ssr.models.gaussian_process import (
    GP_DTYPE,
    GPPosteriorRegressor,
    SquaredExponentialGP,
)


@dataclasses.dataclass
class SSDKLConfig(ConfigSection):
    """SSDKL's constructor arguments (see `SSDKL`), with their sources."""

    name = "ssdkl"
    title = "SSDKL (method ssdkl)"

    alpha: float = option(
        1.0,
        "alpha: weight of the mean posterior variance on the unlabeled batch",
        flag="--ssdkl-alpha",
        source="reference code config.yaml (alpha: 1); paper: chosen on validation",
    )
    embedding_dim: int = option(
        2,
        "linear embedding of the backbone features the kernel acts on (0: the "
        "backbone features themselves)",
        flag="--ssdkl-embedding-dim",
        source="reference code NN_UCI (embedding_dimension=2; its MNIST CNN: 256)",
    )
    gp_learning_rate: float = option(
        0.1,
        "Adam learning rate of the GP hyperparameters (log l, log sigma_f, "
        "log sigma_n)",
        flag="--ssdkl-gp-learning-rate",
        source="reference code config.yaml (lr_gp: 0.1; lr_nn 1e-3 is --learning-rate)",
    )


@keras.saving.register_keras_serializable(package="keras_ssr")
class SSDKL(PredictsFromAnchors, SSRModel):
    """Deep kernel GP regression trained with an unlabeled variance penalty.

    A zero-mean GP with a squared-exponential kernel acts on learned features
    `phi(x) = embedding(backbone(x))` (deep kernel learning). Each step gathers
    the labeled batch `(X, y)` (n rows) and the unlabeled batch `U` (m rows,
    the raw inputs: the paper uses no augmentation) and minimises the paper's
    semi-supervised objective with its normalisation,

        L = -(1/n) log p(y | X) + (alpha / m) sum_{u in U} V[f(u) | X, y],

    the negative log marginal likelihood (R&W eq. 2.30) plus alpha times the
    mean posterior variance of the latent function (eq. 2.26), both through a
    Cholesky factor of `K + sigma_n^2 I`, in float64. The network (backbone and
    embedding) follows the compiled optimizer, the kernel's log l, log sigma_f,
    log sigma_n their own Adam (`gp_learning_rate`). Under `tf.distribute` the
    step all-gathers the features and targets, so every replica computes the
    one-device objective (`gather_rows`).

    The prediction (`call`, hence `evaluate`, and `inference_model()`, hence
    the export) is the GP posterior mean given every labeled training row (the
    anchors, from `prepare(context)` or `set_anchors`), de-standardised: `call`
    recomputes the anchors' features and Cholesky factor with the current
    weights (one anchor forward per predicted batch), `inference_model()` bakes
    them. The regressor's Dense head is not used.

    Args:
        regressor: the `SSRRegressor` whose backbone is the deep kernel's network.
        alpha: weight of the mean unlabeled posterior variance (>= 0).
        embedding_dim: width of the linear embedding on the backbone features
            (0: the kernel acts on the backbone features).
        gp_learning_rate: Adam learning rate of the kernel hyperparameters.
        length_scale, signal_std, noise_std: initial l, sigma_f, sigma_n
            (reference code: 1, 1, 1).
        **kwargs: `SSRModel` arguments.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = SSDKL(SSRRegressor(MLPBackbone((8,))), alpha=1.0)

    References:
        Jean, Xie & Ermon, Semi-supervised Deep Kernel Learning: Regression with
        Unlabeled Data by Minimizing Predictive Variance, NeurIPS 2018
        (reference code: github.com/ermongroup/ssdkl).
    """

    raw_unlabeled_view = True
    config_sections = (SSDKLConfig,)
    loss_terms = (
        "loss",
        "labeled_loss",
        "unlabeled_loss",
        "length_scale",
        "signal_std",
        "noise_std",
    )

    def __init__(
        self,
        regressor,
        alpha=1.0,
        embedding_dim=2,
        gp_learning_rate=0.1,
        length_scale=1.0,
        signal_std=1.0,
        noise_std=1.0,
        **kwargs,
    ):
        super().__init__(regressor, **kwargs)
        self.alpha = check_finite("alpha", alpha, low=0.0)
        if int(embedding_dim) < 0:
            raise ValueError(
                f"embedding_dim must be >= 0 (0: no embedding), got {embedding_dim}."
            )
        self.embedding_dim = int(embedding_dim)
        self.gp_learning_rate = check_finite(
            "gp_learning_rate", gp_learning_rate, low=0.0, low_open=True
        )
        self.gp = SquaredExponentialGP(length_scale, signal_std, noise_std, name="gp")
        self.embedding = (
            # No bias: the kernel depends on differences of embeddings only.
            keras.layers.Dense(self.embedding_dim, use_bias=False, name="embedding")
            if self.embedding_dim
            else keras.layers.Identity(name="embedding")
        )

    def build_method(self, input_shape):
        self.embedding.build(self.regressor.backbone.compute_output_shape(input_shape))
        self.gp.build()
        self.gp_optimizer = keras.optimizers.Adam(self.gp_learning_rate, name="gp_adam")
        self.gp_optimizer.build(self.gp.trainable_weights)

    def variable_groups(self):
        """`network` (backbone + embedding, compiled optimizer) and `gp`."""
        return {
            "network": VariableGroup(
                self.regressor.backbone.trainable_weights
                + self.embedding.trainable_weights,
                self.optimizer,
            ),
            "gp": VariableGroup(self.gp.trainable_weights, self.gp_optimizer),
        }

    def kernel_features(self, x, training=False):
        """phi(x): the embedding of the backbone features (the kernel's input)."""
        return self.embedding(self.regressor.features(x, training=training))

    def compute_losses(self, batch):
        x_l, y_l = batch["labeled"]
        x_u = batch["unlabeled"][0]  # the raw view (raw_unlabeled_view)
        features_l = self.kernel_features(x_l, training=True)
        features_u = gather_rows(self.kernel_features(x_u, training=True))
        targets = gather_rows(tf.cast(y_l, features_l.dtype))
        fit = self.gp.fit(gather_rows(features_l), targets)
        n = tf.cast(tf.shape(targets)[0], GP_DTYPE)
        labeled = self.gp.negative_log_marginal_likelihood(fit, targets) / n
        variance = tf.reduce_mean(self.gp.posterior_variance(fit, features_u))
        dtype = self.compute_dtype
        terms = {
            "labeled_loss": tf.cast(labeled, dtype),
            "unlabeled_loss": tf.cast(variance, dtype),
            "loss": tf.cast(labeled + self.alpha * variance, dtype),
            "labeled_predictions": tf.cast(
                local_rows(self._fitted_mean(fit, targets), tf.shape(x_l)[0]), dtype
            ),
        }
        names = ("length_scale", "signal_std", "noise_std")
        for name, value in zip(names, self.gp.hyperparameters(), strict=True):
            terms[name] = tf.cast(value, dtype)
        return terms

    def _fitted_mean(self, fit, targets):
        """The posterior mean at the training rows, y - sigma_n^2 alpha."""
        _, _, noise = self.gp.hyperparameters()
        return tf.reshape(tf.cast(targets, GP_DTYPE), (-1, 1)) - noise**2 * fit.alpha

    def call(self, inputs, training=False):
        anchors = self.required_anchors()
        fit = self.gp.fit(anchors.features(self.kernel_features), anchors.y)
        mean = self.gp.posterior_mean(fit, self.kernel_features(inputs, training))
        return self.regressor.destandardize(tf.cast(mean, self.compute_dtype))

    def inference_model(self):
        """A `GPPosteriorRegressor` with the anchors' features and alpha
        computed with the current weights."""
        anchors = self.required_anchors()
        fit = self.gp.fit(anchors.features(self.kernel_features), anchors.y)
        return GPPosteriorRegressor.from_fit(
            self.regressor, self.embedding, self.gp, fit, name="ssdkl_posterior"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            embedding_dim=self.embedding_dim,
            gp_learning_rate=self.gp_learning_rate,
            length_scale=self.gp.length_scale,
            signal_std=self.gp.signal_std,
            noise_std=self.gp.noise_std,
        )
        return config
