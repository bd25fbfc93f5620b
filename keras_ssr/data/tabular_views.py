"""`TabularViews`: weak and strong augmented views of tabular features."""

import numpy as np
import tensorflow as tf


class TabularViews:
    """Makes the (weak, strong) views of a batch of raw tabular features.

    Both views add Gaussian noise scaled by each feature's standard deviation;
    the strong view also replaces a random subset of features by their mean
    ("feature dropout"), the tabular analogue of FixMatch's strong augmentation.
    Randomness is stateless (`tf.random.stateless_*`) and driven by a seed per
    batch, so a pipeline is reproducible per seed.

    Args:
        feature_mean: per-feature mean of the training features, shape `(d,)`.
        feature_std: per-feature noise scale (a standard deviation), shape `(d,)`.
        weak_noise: noise std of the weak view, in feature standard deviations.
        strong_noise: noise std of the strong view, in feature standard deviations.
        strong_dropout: probability that a feature is replaced by its mean in the
            strong view.

    Example:

    >>> views = TabularViews(np.zeros(3), np.ones(3))
    >>> weak, strong = views(tf.zeros((4, 3)), seed=tf.constant([1, 2]))
    >>> weak.shape, strong.shape
    (TensorShape([4, 3]), TensorShape([4, 3]))
    """

    def __init__(
        self,
        feature_mean,
        feature_std,
        weak_noise=0.05,
        strong_noise=0.2,
        strong_dropout=0.2,
    ):
        for name, value in [("weak_noise", weak_noise), ("strong_noise", strong_noise)]:
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if not 0.0 <= strong_dropout < 1.0:
            raise ValueError(f"strong_dropout must be in [0, 1), got {strong_dropout}.")
        std = np.asarray(feature_std, dtype="float32")
        self.feature_mean = tf.constant(np.asarray(feature_mean, dtype="float32"))
        self.feature_std = tf.constant(np.where(std > 0, std, 1.0).astype("float32"))
        self.weak_noise = float(weak_noise)
        self.strong_noise = float(strong_noise)
        self.strong_dropout = float(strong_dropout)

    @classmethod
    def fit(cls, features, **kwargs):
        """Views whose scales come from the training `features` array.

        The noise scale is robust: the interquartile range / 1.349 (equal to the
        std for Gaussian columns), so one heavy-tailed column (a population
        count, say) does not get noise far larger than its typical values; the
        std is used where the IQR is 0.
        """
        features = np.asarray(features, dtype="float32")
        q25, q75 = np.percentile(features, [25, 75], axis=0)
        scale = np.where(q75 > q25, (q75 - q25) / 1.349, features.std(axis=0))
        return cls(features.mean(axis=0), scale, **kwargs)

    def __call__(self, x, seed):
        """Returns `(weak, strong)` views of `x` for a `seed` of shape `(2,)`."""
        seeds = tf.random.experimental.stateless_split(seed, num=3)
        weak = self._noisy(x, self.weak_noise, seeds[0])
        strong = self._noisy(x, self.strong_noise, seeds[1])
        keep = tf.random.stateless_uniform(tf.shape(x), seeds[2]) >= self.strong_dropout
        strong = tf.where(keep, strong, self.feature_mean)
        return weak, strong

    def _noisy(self, x, scale, seed):
        noise = tf.random.stateless_normal(tf.shape(x), seed, dtype=x.dtype)
        return x + scale * self.feature_std * noise
