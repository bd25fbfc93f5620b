"""Shared test helpers: a small linear problem and model builders."""

import keras
import numpy as np

from keras_ssr.data.streams import make_train_stream
from keras_ssr.data.tabular_views import TabularViews
from keras_ssr.models.mlp_backbone import MLPBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor


def linear_problem(n=512, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=d) + 0.1 * rng.normal(size=n)).astype("float32")
    return x, y


def make_regressor(d=4, hidden=(16,), **kwargs):
    return SSRRegressor(MLPBackbone(hidden), **kwargs)


def make_batch(x, y, n_l=32, n_u=64, seed=0, noise=0.3):
    views = TabularViews(np.zeros(x.shape[1]), np.ones(x.shape[1]), 0.0, noise, 0.0)
    stream = make_train_stream((x[:n_l], y[:n_l]), x[n_l:], views, n_l, n_u, seed=seed)
    return next(iter(stream))


def compiled(method_cls, regressor, d=4, optimizer=None, **kwargs):
    model = method_cls(regressor, **kwargs)
    model.build((None, d))
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1))
    model.build_optimizers()
    return model


def batch64(seed=0, d=3, n_u=10):
    """A float64 three-stream batch from a noisy linear model (exact math tests)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)

    def pair(n):
        x = rng.normal(size=(n, d))
        return tf.constant(x), tf.constant(x @ w + 0.3 * rng.normal(size=n))

    x_u = rng.normal(size=(n_u, d))
    return {
        "labeled": pair(6),
        "unlabeled": (
            tf.constant(x_u),
            tf.constant(x_u + 0.5 * rng.normal(size=x_u.shape)),
        ),
        "holdout": pair(7),
    }


def central_difference(loss_at, flat, index, eps=1e-6):
    """`(loss(flat + eps e_i) - loss(flat - eps e_i)) / (2 eps)` for a flat array."""
    bumped = []
    for sign in (1, -1):
        values = flat.copy()
        values[index] += sign * eps
        bumped.append(loss_at(values))
    return (bumped[0] - bumped[1]) / (2 * eps)
