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


def make_batch(x, y, n_l=32, n_u=64, seed=0, noise=0.3, unlabeled_index=False):
    return next(iter(make_stream(x, y, n_l, n_u, seed, noise, unlabeled_index)))


def make_stream(x, y, n_l=32, n_u=64, seed=0, noise=0.3, unlabeled_index=False):
    """The three-stream training stream of `make_batch`: `x[:n_l]` labeled."""
    views = TabularViews(np.zeros(x.shape[1]), np.ones(x.shape[1]), 0.0, noise, 0.0)
    return make_train_stream(
        (x[:n_l], y[:n_l]),
        x[n_l:],
        views,
        n_l,
        n_u,
        unlabeled_index=unlabeled_index,
        seed=seed,
    )


def cached(batches):
    """A dataset replaying a list of batches (the same batches for each fit)."""
    import tensorflow as tf

    stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked)


def assert_cli_exports(tmp_path, methods, extra=()):
    """Runs `python -m trainers.run` in-process on the default data set for
    `methods` (1 epoch, 2 steps) and checks that each exported SavedModel's
    `serving_default`, on the raw test rows, reproduces the run's test MAE."""
    import json
    import os

    import tensorflow as tf

    from keras_ssr.methods.registry import get_method
    from trainers.experiment import load_data, make_split
    from trainers.run import main, parse_args

    argv = ["--methods", ",".join(methods), "--epochs", "1",
            "--steps-per-epoch", "2", "--verbose", "0", "--hidden-units", "16",
            "--output-dir", str(tmp_path / "runs"),
            "--export-dir", str(tmp_path / "sm"), "--run-name", "r",
            *extra]  # fmt: skip
    assert main(argv) == 0
    config = parse_args(argv)
    data = load_data(config)
    results = json.load(open(tmp_path / "runs" / "r" / "results.json"))
    for method, record in zip(methods, results["records"], strict=True):
        assert record["method"] == method
        test = make_split(data, config, 0, get_method(method)).test
        path = os.path.join(tmp_path, "sm", "r", method, "1")
        serve = tf.saved_model.load(path).signatures["serving_default"]
        served = serve(features=tf.constant(data.x[test], tf.float32))
        error = np.abs(served["predictions"].numpy()[:, 0] - data.y[test])
        np.testing.assert_allclose(error.mean(), record["test_mae"], rtol=1e-4)
    return results


def fit_state(make_model, dataset, strategy=None, jit_compile=False, seed=3):
    """`(history, weights)` after one `fit` pass over `dataset` of the model
    `make_model()` builds (under `strategy`'s scope, optionally with XLA)."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = make_model()
    if jit_compile:
        model.compile(optimizer=model.optimizer, jit_compile=True)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False).history
    return history, [np.asarray(w) for w in model.weights]


def assert_same_fit(run_a, run_b, rtol=1e-4, atol=1e-6):
    """Two `fit_state` results agree: every logged value and every weight."""
    (h1, w1), (h2, w2) = run_a, run_b
    assert h1.keys() == h2.keys()
    for name in h1:
        np.testing.assert_allclose(h1[name], h2[name], rtol=rtol, atol=atol)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


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
