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
    model.optimizer.build(model.trainable_weights_to_update())
    return model
