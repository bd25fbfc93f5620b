import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from datasets.synthetic_two_group import generate
from keras_ssr.data.target_scaler import TargetScaler
from keras_ssr.export import export_regressor
from keras_ssr.methods.ppi_closed_form import (
    CLOSED_FORM_POINTS,
    closed_form_lambda,
    linear_closed_form_lambda,
    linear_solution,
)
from keras_ssr.methods.ppssl import LAMBDA_MODES, PPSSL, adagrad_lambda_step
from keras_ssr.models.ssr_regressor import SSRRegressor
from keras_ssr.models.teacher import Teacher
from tests.helpers import make_regressor

D = 4


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")


def _linear_regressor(dtype=None):
    return SSRRegressor(keras.layers.Identity(), dtype=dtype)


def _model(regressor, lr=0.1, optimizer=None, **kwargs):
    model = PPSSL(regressor, dtype=regressor.dtype_policy.name, **kwargs)
    model.build((None, D))
    model.compile(optimizer=optimizer or keras.optimizers.SGD(lr))
    model.build_optimizers()
    return model


def _batch(rng, n=16, m=40, offset=0.7, dtype="float64"):
    """One PP-SSL batch; the teacher is the truth plus `offset` where x0 > 0."""
    w = np.array([1.0, -0.5, 0.3, 0.8])

    def rows(k):
        x = rng.normal(size=(k, D))
        return x, x @ w + 0.3 * rng.normal(size=k), x @ w + offset * (x[:, 0] > 0)

    x_l, y_l, yhat_l = rows(n)
    x_u, _, yhat_u = rows(m)
    cast = lambda a: tf.constant(a, dtype)  # noqa: E731
    return {
        "labeled": (cast(x_l), cast(y_l)),
        "unlabeled": (cast(x_u), cast(x_u + 1.0)),  # strong view: unused
        "holdout": (cast(x_l), cast(y_l)),
        "teacher": (cast(yhat_l), cast(yhat_u)),
    }


def _perturb(model, rng):
    for v in model.regressor.trainable_weights:
        v.assign(v + rng.normal(size=v.shape, scale=0.3).astype(v.dtype))


def _taped(model, batch):
    """g_l, ghat_l, ghat_u, each from its own tape."""
    (x_l, y_l), (x_u, _), (yhat_l, yhat_u) = (
        batch[k] for k in ("labeled", "unlabeled", "teacher")
    )
    out = []
    for x, y in ((x_l, y_l), (x_l, yhat_l), (x_u, yhat_u)):
        with tf.GradientTape() as tape:
            pred = model.regressor.standardized(x, training=True)
            loss = tf.reduce_mean((pred - tf.reshape(y, (-1, 1))) ** 2)
        out.append(tape.gradient(loss, model.regressor.trainable_weights))
    return out


def _numpy_terms(model, batch):
    """Linear-model closed forms: g_l, ghat_l, ghat_u as flat (w, b) vectors."""
    params = np.concatenate([np.ravel(v) for v in model.regressor.head.weights])
    (x_l, y_l), (x_u, _), (yhat_l, yhat_u) = (
        tuple(np.asarray(t) for t in batch[k])
        for k in ("labeled", "unlabeled", "teacher")
    )
    return tuple(
        _linear_mean_grad(x, y, params)
        for x, y in ((x_l, y_l), (x_l, yhat_l), (x_u, yhat_u))
    )


def _linear_mean_grad(x, y, params):
    a = np.c_[x, np.ones(len(x))]
    return 2.0 * a.T @ (a @ params - y) / len(a)


def _flat(grads):
    return np.concatenate([np.ravel(g) for g in grads])


@pytest.mark.parametrize("mode", ["adaptive", "fixed"])
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_g0_is_labeled_gradient_and_g1_is_ppi_gradient(float64, mode, lam):
    rng = np.random.default_rng(0)
    model = _model(make_regressor(hidden=(6,), dtype="float64"), lambda_mode=mode)
    model.lambda_variable.assign(lam)
    batch = _batch(rng)
    grads, terms = model.compute_gradients(batch)
    g_l, ghat_l, ghat_u = _taped(model, batch)
    expected = [
        gl + lam * (gu - gh) for gl, gh, gu in zip(g_l, ghat_l, ghat_u, strict=True)
    ]
    groups = model.variable_groups()
    assert groups["regressor"].variables == model.regressor.trainable_weights
    for got, exp in zip(grads["regressor"], expected, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-12)
    assert float(terms["lambda"]) == lam
    if mode == "adaptive":  # one more group: lambda, with d_t as its gradient
        assert groups["lambda"].variables == [model.lambda_variable]
        assert len(grads["lambda"]) == 1
    else:
        assert set(grads) == {"regressor"}


def test_tensor_gradient_and_lambda_slope_match_linear_numpy(float64):
    rng = np.random.default_rng(1)
    model = _model(_linear_regressor("float64"), lambda_mode="adaptive")
    _perturb(model, rng)
    model.lambda_variable.assign(0.3)
    batch = _batch(rng)
    grads, terms = model.compute_gradients(batch)
    g_l, ghat_l, ghat_u = _numpy_terms(model, batch)
    g = g_l + 0.3 * (ghat_u - ghat_l)  # eq. 6
    np.testing.assert_allclose(_flat(grads["regressor"]), g, rtol=1e-10)
    d = 2.0 * g @ (ghat_u - ghat_l)  # eq. 12
    assert float(terms["lambda_gradient"]) == pytest.approx(d, rel=1e-10)


def test_prediction_powered_gradient_is_unbiased_and_ssl_is_not():
    """Fixed population and parameters; the teacher is the true model plus 3 on
    the group x0 > 0.8 quantile. Over 300 random batches, the mean of
    g(lambda) matches the population labeled gradient within 4.5 standard
    errors per coordinate, for lambda in {0.3, 1}; the mean SSL gradient
    (g_l + ghat_u) / 2 (eq. 2, normalised) misses it by more than 10."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, D))
    w = rng.normal(size=D)
    y = x @ w + 0.5 + rng.normal(size=len(x))
    yhat = x @ w + 0.5 + 3.0 * (x[:, 0] > np.quantile(x[:, 0], 0.8))
    params = rng.normal(size=D + 1)
    target = _linear_mean_grad(x, y, params)
    draws = {0.3: [], 1.0: [], "ssl": []}
    for _ in range(300):
        il = rng.choice(len(x), 16, replace=False)
        iu = rng.choice(len(x), 64, replace=False)
        g_l = _linear_mean_grad(x[il], y[il], params)
        ghat_l = _linear_mean_grad(x[il], yhat[il], params)
        ghat_u = _linear_mean_grad(x[iu], yhat[iu], params)
        for lam in (0.3, 1.0):
            draws[lam].append(g_l + lam * (ghat_u - ghat_l))
        draws["ssl"].append((g_l + ghat_u) / 2.0)
    z = {}
    for key, values in draws.items():
        values = np.array(values)
        se = values.std(axis=0, ddof=1) / np.sqrt(len(values))
        z[key] = np.abs(values.mean(axis=0) - target) / se
    assert z[0.3].max() < 4.5 and z[1.0].max() < 4.5
    assert z["ssl"].max() > 10.0


def test_adagrad_step_drives_lambda_within_unit_interval():
    lam, acc, path = 1.0, 0.0, []
    for d in (1e6, 1e6, 1e6, -1e9, -1e9):
        lam, acc = adagrad_lambda_step(lam, acc, d)
        path.append(float(lam))
    # Hand: 1 - 1/sqrt(2); 0.29 - 1e6/sqrt(4e12) < 0 -> 0; stays 0; then
    # 0 + 1e9/sqrt(2 (3e12 + 1e18)); then 0.71 + 1e9/sqrt(2 (3e12 + 2e18)) > 1.
    expected = [1 - 2**-0.5, 0.0, 0.0, 1e9 / np.sqrt(2 * (3e12 + 1e18)), 1.0]
    np.testing.assert_allclose(path, expected, atol=1e-6)
    lam, acc = adagrad_lambda_step(0.5, 0.0, 0.0)  # no signal yet: no move
    assert float(lam) == 0.5 and float(acc) == 0.0


def test_two_adagrad_lambda_steps_match_hand_computation(float64):
    rng = np.random.default_rng(3)
    model = _model(_linear_regressor("float64"), lr=0.05, lambda_mode="adaptive")
    _perturb(model, rng)
    params = np.concatenate([np.ravel(v) for v in model.regressor.head.weights])
    lam, acc = 1.0, 0.0
    for _ in range(2):
        batch = _batch(rng, offset=2.0)
        g_l, ghat_l, ghat_u = _numpy_terms(model, batch)
        delta = ghat_u - ghat_l
        g = g_l + lam * delta  # eq. 6 at lambda_t
        d = 2.0 * g @ delta  # eq. 12
        acc += d**2
        lam = min(max(lam - d / np.sqrt(2.0 * acc), 0.0), 1.0)
        params = params - 0.05 * g  # SGD on theta with g(lambda_t)
        logs = model.train_step(batch)
        assert float(model.lambda_variable.numpy()) == pytest.approx(lam, rel=1e-10)
        assert float(model.lambda_accumulator.numpy()) == pytest.approx(acc, rel=1e-10)
        model_params = np.concatenate(
            [np.ravel(v) for v in model.regressor.head.weights]
        )
        np.testing.assert_allclose(model_params, params, rtol=1e-10)
    assert 0.0 <= lam < 1.0 and float(logs["lambda"]) < 1.0  # mean of 1, lam_2


def _params(model):
    return np.concatenate([np.ravel(v) for v in model.regressor.head.weights])


def test_ssl_step_is_sgd_on_labeled_plus_weighted_pseudo_label_loss(float64):
    """`ssl` (eq. 2): one SGD step moves the linear student by
    -lr (g_l + w ghat_u), g the NumPy gradients of the two mean squared
    errors; the labeled pseudo-label term plays no part."""
    rng = np.random.default_rng(12)
    model = _model(
        _linear_regressor("float64"), lr=0.05, lambda_mode="ssl", unlabeled_weight=0.7
    )
    _perturb(model, rng)
    before = _params(model)
    batch = _batch(rng, offset=2.0)
    g_l, _, ghat_u = _numpy_terms(model, batch)
    logs = model.train_step(batch)
    np.testing.assert_allclose(
        _params(model), before - 0.05 * (g_l + 0.7 * ghat_u), rtol=1e-10
    )
    assert float(logs["lambda"]) == pytest.approx(0.7)


@pytest.mark.parametrize(
    "mode, lam", [("fixed", 0.3), ("closed_form", 0.45), ("fixed", 0.0)]
)
def test_fixed_lambda_step_is_sgd_on_eq_6(float64, mode, lam):
    """`fixed` and `closed_form` (with lambda set): one SGD step moves the
    linear student by -lr g(lambda), g(lambda) = g_l + lambda (ghat_u - ghat_l)
    (eq. 6) from NumPy, and lambda stays where it was."""
    rng = np.random.default_rng(13)
    model = _model(
        _linear_regressor("float64"), lr=0.05, lambda_mode=mode, lambda_value=lam
    )
    _perturb(model, rng)
    for _ in range(2):
        before = _params(model)
        batch = _batch(rng, offset=2.0)
        g_l, ghat_l, ghat_u = _numpy_terms(model, batch)
        model.train_step(batch)
        expected = before - 0.05 * (g_l + lam * (ghat_u - ghat_l))
        np.testing.assert_allclose(_params(model), expected, rtol=1e-10)
    assert float(model.lambda_variable.numpy()) == lam
    assert float(model.lambda_accumulator.numpy()) == 0.0


def test_closed_form_lambda_reduces_to_ppi_plus_plus_mean_formula():
    """Intercept-only model (mean estimation): lambda =
    Cov_n(y, yhat) / ((1 + n/N) Var(yhat over labeled + unlabeled))."""
    rng = np.random.default_rng(4)
    y = rng.normal(size=50)
    yhat_l = 0.6 * y + 0.5 * rng.normal(size=50)
    yhat_u = 0.6 * rng.normal(size=400) + 0.5 * rng.normal(size=400)
    no_x = lambda k: np.zeros((k, 0))  # noqa: E731
    got = linear_closed_form_lambda(no_x(50), y, yhat_l, no_x(400), yhat_u)
    cov = np.mean((y - y.mean()) * (yhat_l - yhat_l.mean()))
    var = np.var(np.r_[yhat_l, yhat_u], ddof=1)
    assert got == pytest.approx(cov / ((1 + 50 / 400) * var), rel=1e-10)
    assert 0.0 < got < 1.0
    grads = np.c_[np.r_[1.0, -1.0]]
    assert closed_form_lambda(grads, -grads, grads, np.eye(1)) == 0.0  # clipped
    assert closed_form_lambda(grads, -grads, grads, np.eye(1), clip=False) < 0.0


def test_ppi_minimizer_zeroes_the_ppi_gradient():
    rng = np.random.default_rng(5)
    a_l, a_u = (np.c_[rng.normal(size=(k, 3)), np.ones(k)] for k in (30, 200))
    y_l, yhat_l, yhat_u = rng.normal(size=30), rng.normal(size=30), rng.normal(size=200)
    p = linear_solution(a_l, y_l, yhat_l, a_u, yhat_u, "ppi_minimizer")
    ppi_gradient = a_l.T @ (a_l @ p - y_l) / 30 + (
        a_u.T @ (a_u @ p - yhat_u) / 200 - a_l.T @ (a_l @ p - yhat_l) / 30
    )
    np.testing.assert_allclose(ppi_gradient, 0.0, atol=1e-12)


def _ppi_py_lhat_reference(x, y, yhat, x_u, yhat_u):
    """ppi_py's lhat of `ppi_ols_pointestimate(lam=None)`, re-derived from its
    formulas: point = OLS(X_u, Yhat_u) + OLS(X, Y - Yhat); per-example
    gradients x (x^T theta - label); Hessian sum of x x^T over all n + N rows
    / (n + N); lhat = tr(V C V) / (2 (1 + n/N) tr(V S V)), clipped."""
    big_x, big_x_u = np.c_[x, np.ones(len(x))], np.c_[x_u, np.ones(len(x_u))]

    def ols(a, b):
        return np.linalg.solve(a.T @ a, a.T @ b)

    theta = ols(big_x_u, yhat_u) + ols(big_x, y - yhat)
    n, big_n = len(y), len(yhat_u)
    hessian = sum(np.outer(r, r) for r in np.r_[big_x, big_x_u]) / (n + big_n)
    g = np.array([r * (r @ theta - t) for r, t in zip(big_x, y, strict=True)])
    gh = np.array([r * (r @ theta - t) for r, t in zip(big_x, yhat, strict=True)])
    ghu = np.array([r * (r @ theta - t) for r, t in zip(big_x_u, yhat_u, strict=True)])
    gc, ghc = g - g.mean(0), gh - gh.mean(0)
    c = (gc.T @ ghc + ghc.T @ gc) / n
    every = np.r_[gh, ghu] - np.r_[gh, ghu].mean(0)
    s = every.T @ every / (n + big_n - 1)
    v = np.linalg.inv(hessian)
    lam = np.trace(v @ c @ v) / (2 * (1 + n / big_n) * np.trace(v @ s @ v))
    return float(np.clip(lam, 0.0, 1.0))


def _nonlinear_teacher_data(rng, n=25, big_n=300):
    """The teacher knows a hidden feature z and is curved in x0, so its point
    estimate is not labeled least squares, and n is small, so ppi_py's point
    is not the PPI minimiser."""

    def rows(k):
        x = rng.normal(size=(k, 3))
        z = rng.normal(size=k)
        y = x @ np.array([1.0, -0.5, 0.3]) + z + 0.5 * rng.normal(size=k)
        yhat = x @ np.array([0.8, -0.5, 0.3]) + 0.8 * z + 0.3 * x[:, 0] ** 2
        return x, y, yhat

    (x_l, y_l, yhat_l), (x_u, _, yhat_u) = rows(n), rows(big_n)
    return x_l, y_l, yhat_l, x_u, yhat_u


def test_ppi_py_point_reproduces_ppi_py_lhat_and_differs_from_the_minimizer():
    for seed in range(5):
        data = _nonlinear_teacher_data(np.random.default_rng(seed))
        expected = _ppi_py_lhat_reference(*data)
        assert 0.0 < expected < 1.0  # not clipped: the comparison is exact
        got = linear_closed_form_lambda(*data, at="ppi_py")
        assert got == pytest.approx(expected, rel=1e-9)
        assert linear_closed_form_lambda(*data) == got  # the default point
        minimizer = linear_closed_form_lambda(*data, at="ppi_minimizer")
        assert abs(minimizer - got) > 1e-3
    # Equal Gram matrices (intercept only): the two points coincide.
    x_l, y_l, yhat_l, x_u, yhat_u = _nonlinear_teacher_data(np.random.default_rng(0))
    a_l, a_u = np.ones((len(y_l), 1)), np.ones((len(yhat_u), 1))
    np.testing.assert_allclose(
        linear_solution(a_l, y_l, yhat_l, a_u, yhat_u, "ppi_py"),
        linear_solution(a_l, y_l, yhat_l, a_u, yhat_u, "ppi_minimizer"),
    )


def test_ppi_py_point_is_labeled_least_squares_for_a_linear_teacher():
    """A teacher linear in the features is fitted exactly on the unlabeled
    rows, so OLS(yhat_u) + OLS(y - yhat) = OLS(y): the synthetic protocol's
    case."""
    rng = np.random.default_rng(11)
    a_l, a_u = (np.c_[rng.normal(size=(k, 3)), np.ones(k)] for k in (20, 500))
    teacher = np.array([0.5, 1.0, -2.0, 0.3])
    y_l = a_l @ teacher + rng.normal(size=20)
    point = linear_solution(a_l, y_l, a_l @ teacher, a_u, a_u @ teacher, "ppi_py")
    supervised = linear_solution(a_l, y_l, None, None, None, "supervised")
    np.testing.assert_allclose(point, supervised, atol=1e-10)


def test_closed_form_points_are_named_and_bad_points_are_rejected():
    assert CLOSED_FORM_POINTS == ("ppi_py", "ppi_minimizer", "supervised", "current")
    data = _nonlinear_teacher_data(np.random.default_rng(0))
    with pytest.raises(ValueError, match="one of ppi_py, ppi_minimizer"):
        linear_closed_form_lambda(*data, at="ppi")
    with pytest.raises(ValueError, match="pass them as an array"):
        linear_closed_form_lambda(*data, at="current")


def test_calibrate_lambda_uses_the_linear_students_parameters(float64):
    rng = np.random.default_rng(9)
    batch = _batch(rng, n=40, m=200, offset=1.0)
    (x_l, y_l), (x_u, _), (yhat_l, yhat_u) = (
        tuple(np.asarray(t) for t in batch[k])
        for k in ("labeled", "unlabeled", "teacher")
    )
    model = _model(_linear_regressor("float64"), lambda_mode="closed_form")
    _perturb(model, rng)
    params = np.concatenate([np.ravel(v) for v in model.regressor.head.weights])
    got = model.calibrate_lambda((x_l, y_l), yhat_l, x_u, yhat_u, at="current")
    expected = linear_closed_form_lambda(x_l, y_l, yhat_l, x_u, yhat_u, at=params)
    assert got == pytest.approx(expected, rel=1e-10) and model.lambda_value == got
    for at in ("ppi_py", "ppi_minimizer", "supervised"):
        lam = model.calibrate_lambda((x_l, y_l), yhat_l, x_u, yhat_u, at=at)
        assert lam == pytest.approx(
            linear_closed_form_lambda(x_l, y_l, yhat_l, x_u, yhat_u, at=at), rel=1e-10
        )
    model.train_step(batch)  # calibrated: trains with the constant lambda
    assert float(model.lambda_variable.numpy()) == lam


def _stream(x_l, y_l, yhat_l, x_u, yhat_u, n=32, m=256, seed=0):
    """The PP-SSL stream format: `teacher` rows shuffled with their rows."""

    def repeated(arrays, size, s):
        ds = tf.data.Dataset.from_tensor_slices(arrays)
        return ds.shuffle(len(arrays[0]), seed=s).repeat().batch(size, True)

    labeled = repeated((x_l, y_l, yhat_l), n, seed)
    unlabeled = repeated((x_u, yhat_u), m, seed + 1)
    return tf.data.Dataset.zip(labeled, unlabeled).map(
        lambda lab, unl: {
            "labeled": lab[:2],
            "unlabeled": (unl[0], unl[0]),
            "holdout": lab[:2],
            "teacher": (lab[2], unl[1]),
        }
    )


def _hidden_feature_data(rng, k):
    """Linear-Gaussian rows; the teacher sees a feature z the student lacks."""
    x = rng.normal(size=(k, D)).astype("float32")
    z = rng.normal(size=k)
    clean = x @ np.array([1.0, -0.5, 0.3, 0.8]) + 0.2 + 0.8 * z
    y = clean + 0.5 * rng.normal(size=k)
    return x, y.astype("float32"), (clean + 0.4 * rng.normal(size=k)).astype("float32")


def test_online_lambda_approaches_closed_form():
    """Good teacher (it knows z; its error std 0.4, label noise std 0.5): near
    the optimum both lambdas estimate 0.64 / ((1 + n/N) 0.8) = 0.711 (features
    independent of residuals, so V cancels), with n/N = 1/8 for the sets and
    for the batches (32 / 256). Sets are large (4096 / 32768 rows) because the
    closed form's own sampling noise is large (0.53-0.83 over seeds with 256
    labeled rows). Then the mean lambda of the last 250 of 1000 SGD steps is
    within 0.05 of the closed form at the PPI solution (seeds 0-5 gave gaps
    <= 0.02; AdaGrad's first step always moves lambda by D / sqrt(2))."""
    rng = np.random.default_rng(6)
    x_l, y_l, yhat_l = _hidden_feature_data(rng, 4096)
    x_u, _, yhat_u = _hidden_feature_data(rng, 32768)
    model = _model(_linear_regressor(), lr=0.01, lambda_mode="adaptive")
    history = model.fit(
        _stream(x_l, y_l, yhat_l, x_u, yhat_u),
        epochs=4,
        steps_per_epoch=250,
        verbose=0,
        shuffle=False,
    ).history
    closed = PPSSL(_linear_regressor(), lambda_mode="closed_form")
    closed.build((None, D))
    lam_star = closed.calibrate_lambda((x_l, y_l), yhat_l, x_u, yhat_u)  # ppi_py
    assert lam_star == pytest.approx(0.64 / (1.125 * 0.8), abs=0.05)
    assert float(closed.lambda_variable.numpy()) == pytest.approx(lam_star, rel=1e-6)
    assert history["lambda"][-1] == pytest.approx(lam_star, abs=0.05)


def _distinct_batches(k, seed=7):
    rng = np.random.default_rng(seed)
    batches = [_batch(rng, n=16, m=32, offset=1.5, dtype="float32") for _ in range(k)]
    stacked = tf.nest.map_structure(lambda *t: np.stack(t), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked)


@pytest.mark.parametrize("mode", ["adaptive", "ssl"])
def test_mirrored_strategy_matches_one_device(two_device_strategy, mode):
    ds = _distinct_batches(6)
    results = []
    for strategy in (None, two_device_strategy):
        keras.utils.set_random_seed(5)
        with (strategy or tf.distribute.get_strategy()).scope():
            model = _model(
                make_regressor(hidden=(8,)),
                optimizer=keras.optimizers.Adam(1e-2),
                lambda_mode=mode,
            )
        history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
        state = [model.lambda_variable, model.lambda_accumulator]
        weights = [w.numpy() for w in model.regressor.weights + state]
        results.append((history, weights))
    (h1, w1), (h2, w2) = results
    for name in ("loss", "lambda", "teacher_unlabeled_loss"):
        assert h1[name][0] == pytest.approx(h2[name][0], rel=1e-4, abs=1e-6)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if mode == "adaptive":
        assert 0.0 <= w1[-2] < 1.0 and w1[-1] > 0.0  # lambda moved, state kept


def test_fixed_modes_train_under_fit_and_only_labeled_needs_no_teacher():
    ds = _distinct_batches(3)
    for mode, lam in (("fixed", 0.4), ("only_labeled", 0.0)):
        model = _model(make_regressor(), lambda_mode=mode, lambda_value=lam)
        history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
        assert history["lambda"] == [pytest.approx(lam)]
        assert np.isfinite(history["loss"][0])
    no_teacher = ds.map(lambda b: {k: v for k, v in b.items() if k != "teacher"})
    model.fit(no_teacher, epochs=1, verbose=0, shuffle=False)
    assert "teacher_labeled_loss" not in model.loss_trackers


def test_get_config_round_trip_and_bad_options():
    for mode in LAMBDA_MODES:
        model = PPSSL(make_regressor(), lambda_mode=mode, lambda_diameter=0.5)
        clone = PPSSL.from_config(model.get_config())
        assert clone.get_config() == model.get_config()
    model = PPSSL(make_regressor(), lambda_mode="fixed", lambda_value=0.25)
    model.build((None, D))
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(model)
    )
    assert clone.built  # from its build config
    assert float(clone.lambda_variable.numpy()) == 0.25
    with pytest.raises(ValueError, match="lambda_mode must be one of"):
        PPSSL(make_regressor(), lambda_mode="ppi")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        PPSSL(make_regressor(), lambda_value=1.5)
    uncalibrated = _model(make_regressor(), lambda_mode="closed_form")
    with pytest.raises(ValueError, match="calibrate_lambda"):
        uncalibrated.compute_losses(_batch(np.random.default_rng(0), dtype="float32"))


def test_lambda_state_checkpoints(tmp_path):
    model = _model(make_regressor(), lambda_mode="adaptive")
    model.train_step(_batch(np.random.default_rng(8), dtype="float32"))
    path = str(tmp_path / "ppssl.weights.h5")
    model.save_weights(path)
    other = _model(make_regressor(), lambda_mode="adaptive")
    other.load_weights(path)
    for name in ("lambda_variable", "lambda_accumulator"):
        assert getattr(other, name).numpy() == getattr(model, name).numpy()
    assert float(model.lambda_accumulator.numpy()) > 0.0


def test_teacher_constructors_and_standardised_labels(tmp_path):
    data, w, b = generate(bias=2.0, num_samples=300, seed=0)
    oracle = Teacher.from_linear(w, b)
    np.testing.assert_allclose(oracle.predict(data.x), data.x @ w + b, rtol=1e-6)
    fitted = Teacher.fit_linear(data.x, data.x @ w + b)  # noiseless pretrain
    np.testing.assert_allclose(fitted.predict(data.x), data.x @ w + b, atol=1e-4)
    scaler = TargetScaler.fit(data.y[:50])
    labels = oracle.standardized_labels(data.x, scaler)
    assert labels.dtype == np.float32
    np.testing.assert_allclose(
        labels, (data.x @ w + b - scaler.mean) / scaler.std, rtol=1e-5, atol=1e-5
    )
    regressor = make_regressor(target_mean=3.0, target_std=2.0)
    x = data.x[:20].astype("float32")
    expected = regressor(x).numpy().ravel()
    small = Teacher.from_keras(regressor, batch_size=7)  # several calls
    np.testing.assert_allclose(small.predict(x), expected, rtol=1e-6)
    export_regressor(regressor, str(tmp_path / "1"), data.num_features)
    loaded = Teacher.load(str(tmp_path / "1"))
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="No SavedModel"):
        Teacher.load(os.path.join(str(tmp_path), "missing"))


def test_adaptive_step_under_jit_compile_matches_graph():
    ds = _distinct_batches(3)
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        model = _model(make_regressor(), lambda_mode="adaptive")
        model.compile(optimizer=model.optimizer, jit_compile=jit)
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        state = model.regressor.weights + [model.lambda_variable]
        results.append([v.numpy() for v in state])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
