"""`SquaredExponentialGP`: exact Gaussian-process regression on learned features.

Equation numbers refer to Rasmussen & Williams, Gaussian Processes for Machine
Learning (2006), chapter 2; the linear algebra follows their Algorithm 2.1
(Cholesky factorisation, two triangular solves).
"""

import collections
import math

import keras
import tensorflow as tf

# The GP's linear algebra runs in float64: K + sigma_n^2 I over a few hundred
# rows is too ill-conditioned for a float32 Cholesky once sigma_n is small.
GP_DTYPE = "float64"

GPFit = collections.namedtuple("GPFit", ["features", "cholesky", "alpha"])
GPFit.__doc__ = """A GP conditioned on training rows: their `features` (n, d),
`cholesky` L of K + sigma_n^2 I and `alpha` = (K + sigma_n^2 I)^-1 y, (n, 1),
all float64 (`cholesky` may be `None` when only the mean is needed)."""


@keras.saving.register_keras_serializable(package="keras_ssr")
class SquaredExponentialGP(keras.layers.Layer):
    """Zero-mean GP with a squared-exponential kernel and Gaussian noise.

    `k(a, b) = sigma_f^2 exp(-|a - b|^2 / (2 l^2))` (eq. 2.31) on feature
    vectors, `y = f(x) + eps`, `eps ~ N(0, sigma_n^2)`. The length scale l, the
    signal standard deviation sigma_f and the noise standard deviation sigma_n
    are trainable, stored as logarithms (so they stay positive). Inputs are
    cast to float64 (`GP_DTYPE`) and so are the results.

    Args:
        length_scale: initial l.
        signal_std: initial sigma_f.
        noise_std: initial sigma_n.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> gp = SquaredExponentialGP()
    >>> gp.build()
    >>> fit = gp.fit(tf.zeros((3, 2)), tf.ones(3))
    >>> gp.posterior_mean(fit, tf.zeros((1, 2))).shape
    TensorShape([1, 1])

    References:
        Rasmussen & Williams, Gaussian Processes for Machine Learning, 2006.
        Wilson et al., Deep Kernel Learning, AISTATS 2016.
    """

    def __init__(self, length_scale=1.0, signal_std=1.0, noise_std=1.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in [
            ("length_scale", length_scale),
            ("signal_std", signal_std),
            ("noise_std", noise_std),
        ]:
            if not (math.isfinite(float(value)) and float(value) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}.")
        self.length_scale = float(length_scale)
        self.signal_std = float(signal_std)
        self.noise_std = float(noise_std)

    def build(self, input_shape=None):
        def log_weight(name, value):
            return self.add_weight(
                name=name,
                shape=(),
                initializer=keras.initializers.Constant(math.log(value)),
            )

        self.log_length_scale = log_weight("log_length_scale", self.length_scale)
        self.log_signal_std = log_weight("log_signal_std", self.signal_std)
        self.log_noise_std = log_weight("log_noise_std", self.noise_std)
        self.built = True

    def hyperparameters(self):
        """`(l, sigma_f, sigma_n)` as float64 scalars."""
        return tuple(
            tf.exp(tf.cast(v, GP_DTYPE))
            for v in (self.log_length_scale, self.log_signal_std, self.log_noise_std)
        )

    def kernel(self, a, b):
        """The kernel matrix `k(a_i, b_j)`, shape (len(a), len(b)) (eq. 2.31)."""
        a, b = tf.cast(a, GP_DTYPE), tf.cast(b, GP_DTYPE)
        squared = (
            tf.reduce_sum(a * a, axis=1)[:, None]
            + tf.reduce_sum(b * b, axis=1)[None, :]
            - 2.0 * tf.matmul(a, b, transpose_b=True)
        )
        length, signal, _ = self.hyperparameters()
        return signal**2 * tf.exp(-tf.maximum(squared, 0.0) / (2.0 * length**2))

    def fit(self, features, targets):
        """Conditions on training rows: L = chol(K + sigma_n^2 I) and
        alpha = L^T \\ (L \\ y) (Algorithm 2.1, lines 2-3)."""
        features = tf.cast(features, GP_DTYPE)
        y = tf.reshape(tf.cast(targets, GP_DTYPE), (-1, 1))
        _, _, noise = self.hyperparameters()
        n = tf.shape(features)[0]
        covariance = self.kernel(features, features) + noise**2 * tf.eye(
            n, dtype=GP_DTYPE
        )
        cholesky = tf.linalg.cholesky(covariance)
        return GPFit(features, cholesky, tf.linalg.cholesky_solve(cholesky, y))

    def negative_log_marginal_likelihood(self, fit, targets):
        """-log p(y | X) = y^T alpha / 2 + sum_i log L_ii + n/2 log 2 pi
        (eq. 2.30, with log|K + sigma_n^2 I| = 2 sum_i log L_ii)."""
        y = tf.reshape(tf.cast(targets, GP_DTYPE), (-1, 1))
        n = tf.cast(tf.shape(y)[0], GP_DTYPE)
        return (
            0.5 * tf.reduce_sum(y * fit.alpha)
            + tf.reduce_sum(tf.math.log(tf.linalg.diag_part(fit.cholesky)))
            + 0.5 * n * math.log(2.0 * math.pi)
        )

    def posterior_mean(self, fit, features):
        """E[f(x*)] = k*^T alpha for each row of `features`, shape (b, 1)
        (eq. 2.25; Algorithm 2.1, line 4)."""
        return tf.matmul(self.kernel(features, fit.features), fit.alpha)

    def posterior_variance(self, fit, features):
        """V[f(x*)] = k(x*, x*) - v^T v, v = L \\ k*, for each row of
        `features`, shape (b,) (eq. 2.26; Algorithm 2.1, lines 5-6); the
        latent function's variance, without the noise sigma_n^2."""
        v = tf.linalg.triangular_solve(
            fit.cholesky, self.kernel(fit.features, features), lower=True
        )
        _, signal, _ = self.hyperparameters()
        return signal**2 - tf.reduce_sum(v * v, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            length_scale=self.length_scale,
            signal_std=self.signal_std,
            noise_std=self.noise_std,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ssr")
class GPPosteriorRegressor(keras.Model):
    """The GP posterior mean given labeled anchors, from raw inputs (SSDKL's export).

    `call` maps raw inputs to the deep kernel's features
    `embedding(regressor.features(x))`, takes the posterior mean
    `k(x, X_a) alpha` given the anchors' features X_a and
    `alpha = (K_aa + sigma_n^2 I)^-1 y_a` (eq. 2.25) and de-standardises it
    with the regressor's target statistics. X_a and alpha are weights, filled
    by `from_fit` from a `GPFit` computed with the final network weights.

    Args:
        regressor: the `SSRRegressor` whose `features` feed the kernel.
        embedding: the layer from backbone features to the kernel's inputs.
        gp: the `SquaredExponentialGP`.
        num_anchors: number of anchor rows.
        feature_dim: dimension of the kernel's input features.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> regressor = SSRRegressor(MLPBackbone((4,)))
    >>> regressor.build((None, 3))
    >>> gp = SquaredExponentialGP()
    >>> gp.build()
    >>> fit = gp.fit(regressor.features(np.ones((5, 3), "float32")), np.ones(5))
    >>> model = GPPosteriorRegressor.from_fit(
    ...     regressor, keras.layers.Identity(), gp, fit)
    >>> model(np.ones((2, 3), "float32")).shape
    TensorShape([2, 1])

    References:
        Jean, Xie & Ermon, Semi-supervised Deep Kernel Learning, NeurIPS 2018.
    """

    def __init__(self, regressor, embedding, gp, num_anchors, feature_dim, **kwargs):
        super().__init__(**kwargs)
        self.regressor = regressor
        self.embedding = embedding
        self.gp = gp
        self.num_anchors = int(num_anchors)
        self.feature_dim = int(feature_dim)
        self.anchor_features = self.add_weight(
            name="anchor_features",
            shape=(self.num_anchors, self.feature_dim),
            dtype=GP_DTYPE,
            initializer="zeros",
            trainable=False,
        )
        self.alpha = self.add_weight(
            name="alpha",
            shape=(self.num_anchors, 1),
            dtype=GP_DTYPE,
            initializer="zeros",
            trainable=False,
        )

    @classmethod
    def from_fit(cls, regressor, embedding, gp, fit, **kwargs):
        """The model predicting the posterior mean of `fit` (a `GPFit`)."""
        num_anchors, feature_dim = fit.features.shape
        model = cls(regressor, embedding, gp, num_anchors, feature_dim, **kwargs)
        model.anchor_features.assign(fit.features)
        model.alpha.assign(fit.alpha)
        model.built = True
        return model

    def build(self, input_shape):
        self.built = True

    @property
    def input_dtype(self):
        """The regressor's input dtype (for the default serving signature)."""
        return self.regressor.input_dtype

    def call(self, inputs, training=False):
        features = self.embedding(self.regressor.features(inputs, training=False))
        fit = GPFit(self.anchor_features, None, self.alpha)
        mean = self.gp.posterior_mean(fit, features)
        return self.regressor.destandardize(
            keras.ops.cast(mean, self.regressor.compute_dtype)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            regressor=keras.saving.serialize_keras_object(self.regressor),
            embedding=keras.saving.serialize_keras_object(self.embedding),
            gp=keras.saving.serialize_keras_object(self.gp),
            num_anchors=self.num_anchors,
            feature_dim=self.feature_dim,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("regressor", "embedding", "gp"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
