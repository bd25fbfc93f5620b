"""Tests of `L2I` against independent math (closed forms, finite differences).

Notation (standardised units, means over each batch):
    C^T = mean_l (f(x_l) - y_l)^2,  C^U(z) = mean_u (z_u - f(strong_u))^2,
    theta* = theta - eta * grad_theta(C^T + C^U(z)),
    C^H(theta*) = mean_h (f_{theta*}(x_h) - y_h)^2.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.methods.imputers import EMATeacher, OwnPrediction
from keras_ssr.methods.l2i import L2I
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.models.mlp_backbone import MLPBackbone
from keras_ssr.models.ssr_regressor import SSRRegressor
from tests.helpers import (
    batch64,
    central_difference,
    compiled,
    linear_problem,
    make_batch,
    make_regressor,
)


def _build(model, d=3, learning_rate=0.1):
    model.build((None, d))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    model.build_optimizers()
    return model


def _l2i64(backbone=None, freeze_backbone=False, **kwargs):
    backbone = backbone or MLPBackbone((5,), activation="tanh")
    regressor = SSRRegressor(backbone, dtype="float64")
    model = L2I(regressor, dtype="float64", **kwargs)
    if freeze_backbone:
        regressor.backbone.trainable = False
    return _build(model)


def _ordinary_gradient(model, batch, target, lam):
    """Independent: d/dtheta of C^T + lam * mean((target - f(strong))^2)."""
    reg = model.regressor
    (x_l, y_l), (_, x_s) = batch["labeled"], batch["unlabeled"]
    with tf.GradientTape() as tape:
        pred_l = reg.standardized(x_l, training=True)
        pred_s = reg.standardized(x_s, training=True)
        loss = tf.reduce_mean((tf.reshape(y_l, (-1, 1)) - pred_l) ** 2)
        loss += lam * tf.reduce_mean((target - pred_s) ** 2)
    return tape.gradient(loss, reg.trainable_weights)


# ---------- 1-3: the hypergradient against independent math (float64) ----------


@pytest.mark.parametrize("unroll_loss", ["both", "unlabeled"])
def test_head_imputation_gradient_matches_appendix_b2_closed_form(float64, unroll_loss):
    """Linear head over fixed features F (the paper's one-layer model, B.2).

    With theta = (W, b), r_u = F_u W + b (strong view) and mean losses,
        grad_W = 2/n_l F_l^T (F_l W + b - y_l) + 2/n_u F_u^T (F_u W + b - z),
        grad_b = 2/n_l sum(F_l W + b - y_l) + 2/n_u sum(F_u W + b - z),
    so dW*/dz_u = 2 eta / n_u F_u^T and db*/dz_u = 2 eta / n_u. With
    e_h = F_h W* + b* - y_h, dC^H/dW* = 2/n_h F_h^T e and dC^H/db* = 2/n_h sum e:
        dC^H/dz_u = 4 eta / (n_h n_u) * sum_h e_h (F_h . F_u + 1),
    the paper's eq. 11 (4 eta sum_H (theta*^T x - y) x^T x_u, with sums) with
    the 1/(n_h n_u) of mean losses and the bias as a constant feature. With
    `unroll_loss="unlabeled"` (reference code) the step has no C^T term; the
    formula is the same at the other theta*.
    """
    eta = 0.3
    model = _l2i64(unroll="head", unroll_learning_rate=eta, unroll_loss=unroll_loss)
    batch = batch64()
    parts = model.forward(batch)
    grad, holdout_loss = model.imputation_gradient(batch, parts)

    reg = model.regressor
    (x_l, y_l), (x_w, x_s), (x_h, y_h) = (
        batch["labeled"],
        batch["unlabeled"],
        batch["holdout"],
    )
    f_l, f_w, f_s, f_h = (reg.features(x).numpy() for x in (x_l, x_w, x_s, x_h))
    w, b = reg.head.kernel.numpy(), reg.head.bias.numpy()
    y_l, y_h = y_l.numpy()[:, None], y_h.numpy()[:, None]
    n_l, n_u, n_h = len(f_l), len(f_s), len(f_h)
    z = f_w @ w + b  # the pseudo-label imputer: the model on the weak view
    e_l, e_u = f_l @ w + b - y_l, f_s @ w + b - z
    if unroll_loss == "unlabeled":
        e_l = 0 * e_l
    w_star = w - eta * (2 / n_l * f_l.T @ e_l + 2 / n_u * f_s.T @ e_u)
    b_star = b - eta * (2 / n_l * e_l.sum(0) + 2 / n_u * e_u.sum(0))
    e_h = f_h @ w_star + b_star - y_h
    expected = 4 * eta / (n_h * n_u) * (f_s @ f_h.T + 1) @ e_h

    np.testing.assert_allclose(parts["z"].numpy(), z, rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-8, atol=1e-14)
    assert float(holdout_loss) == pytest.approx(np.mean(e_h**2), rel=1e-12)
    assert np.abs(expected).max() > 1e-3


@pytest.mark.parametrize("unroll", ["full", "head"])
def test_v1_label_step_lowers_the_holdout_loss(float64, unroll):
    """C^H(z - eps g) = C^H(z) - eps |g|^2 + O(eps^2), g = dC^H/dz."""
    model = _l2i64(unroll=unroll, unroll_learning_rate=0.5)
    batch = batch64(seed=1)
    parts = model.forward(batch)
    grad, before = model.imputation_gradient(batch, parts)
    eps = 1e-2
    after = model.unrolled_holdout_loss(batch, parts, parts["z"] - eps * grad)
    predicted = eps * float(tf.reduce_sum(grad**2))
    assert float(before - after) > 0
    assert float(before - after) == pytest.approx(predicted, rel=2e-2)


@pytest.mark.parametrize("unroll", ["full", "head"])
def test_v1_trains_on_the_updated_labels(float64, unroll):
    """V1: gradient of C^T + lambda * C^U(z_hat), z_hat = z - eta_z dC^H/dz."""
    lam, eta_z = 0.75, 3.0  # lambda_t is float32: exact values
    model = _l2i64(
        unroll=unroll,
        unroll_learning_rate=0.5,
        imputation_learning_rate=eta_z,
        unlabeled_weight=lam,
    )
    batch = batch64(seed=2)
    parts = model.forward(batch)
    grad, _ = model.imputation_gradient(batch, parts)
    z_hat = parts["z"] - eta_z * grad
    grads, terms = model.compute_gradients(batch)
    grads = grads["regressor"]
    assert model.variable_groups()["regressor"].variables == (
        model.regressor.trainable_weights
    )
    for got, exp in zip(
        grads, _ordinary_gradient(model, batch, z_hat, lam), strict=True
    ):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-14)
    pred_s = model.regressor.standardized(batch["unlabeled"][1])
    assert float(terms["unlabeled_loss"]) == pytest.approx(
        float(tf.reduce_mean((z_hat - pred_s) ** 2)), rel=1e-12
    )


@pytest.mark.parametrize("unroll", ["full", "head"])
def test_v2_extra_gradient_matches_finite_differences(float64, unroll):
    """V2 adds d/dtheta' C^H(theta*(z = f_theta'(weak))) at theta' = theta: the
    hold-out loss of the unrolled step, differentiated through the imputer
    only. Checked by central differences that perturb theta inside psi only."""
    lam = 0.75  # exact in float32 (unlabeled_weight_now is float32)
    model = _l2i64(
        variant="v2", unroll=unroll, unroll_learning_rate=0.5, unlabeled_weight=lam
    )
    batch = batch64(seed=3)
    reg = model.regressor
    x_w = batch["unlabeled"][0]
    grads = model.compute_gradients(batch)[0]["regressor"]
    target = tf.stop_gradient(reg.standardized(x_w))
    ordinary = _ordinary_gradient(model, batch, target, lam)
    parts = model.forward(batch)

    def holdout_loss_with_imputer(var, values):
        original = var.numpy()
        var.assign(values)
        z = reg.standardized(x_w)  # psi at the perturbed weights
        var.assign(original)
        return float(model.unrolled_holdout_loss(batch, parts, z))

    eps = 1e-6
    largest = 0.0
    for var, grad, base in zip(reg.trainable_weights, grads, ordinary, strict=True):
        extra = (grad - base).numpy().ravel()
        flat = var.numpy().ravel()
        for i in range(0, flat.size, max(1, flat.size // 3)):
            fd = central_difference(
                lambda v, var=var: holdout_loss_with_imputer(var, v.reshape(var.shape)),
                flat,
                i,
                eps,
            )
            assert extra[i] == pytest.approx(fd, rel=1e-5, abs=1e-10)
            largest = max(largest, abs(fd))
    assert largest > 1e-4


def test_mean_teacher_v2_targets_from_teacher_hypergradient_via_student(float64):
    """Ordinary term on the teacher's labels; the V2 term equals the
    pseudo-label imputer's (both unroll at the student's weak prediction)."""
    lam = 0.75  # exact in float32 (unlabeled_weight_now is float32)
    kwargs = dict(variant="v2", unroll_learning_rate=0.5, unlabeled_weight=lam)
    keras.utils.set_random_seed(4)
    teacher_model = _l2i64(imputer="mean_teacher", **kwargs)
    keras.utils.set_random_seed(4)
    student_model = _l2i64(imputer="pseudo_label", **kwargs)
    teacher = teacher_model.imputer.teacher
    teacher.head.kernel.assign(2.0 * teacher.head.kernel)  # teacher != student
    batch = batch64(seed=5)
    x_w = batch["unlabeled"][0]
    extras = []
    for model, imputer in ((teacher_model, teacher), (student_model, None)):
        target = (imputer or model.regressor).standardized(x_w)
        grads = model.compute_gradients(batch)[0]["regressor"]
        base = _ordinary_gradient(model, batch, target, lam)
        extras.append([(g - o).numpy() for g, o in zip(grads, base, strict=True)])
    for a, b in zip(*extras, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)
    before = teacher.head.kernel.numpy().copy()
    teacher_model.train_step(batch)  # the EMA teacher follows the student
    assert not np.array_equal(before, teacher.head.kernel.numpy())


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_head_and_full_unroll_agree_when_only_the_head_trains(float64, variant):
    results = []
    for unroll in ("head", "full"):
        keras.utils.set_random_seed(6)
        model = _l2i64(
            unroll=unroll,
            variant=variant,
            unroll_learning_rate=0.5,
            freeze_backbone=True,
        )
        assert len(model.regressor.trainable_weights) == 2
        batch = batch64(seed=6)
        parts = model.forward(batch)
        grad, holdout_loss = model.imputation_gradient(batch, parts)
        grads = model.compute_gradients(batch)[0]["regressor"]
        results.append([grad, holdout_loss] + list(grads))
    assert np.abs(results[0][0].numpy()).max() > 1e-4
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


# ---------- BatchNorm / Dropout: the unroll is functional ----------


class _NormBackbone(keras.layers.Layer):
    """Dense -> BatchNorm -> relu -> Dropout, for the functional-unroll tests."""

    def __init__(self, units=6, dropout=0.3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)
        self.norm = keras.layers.BatchNormalization(momentum=0.5)
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.norm.build((None, self.units))

    def call(self, x, training=False):
        x = keras.ops.relu(self.norm(self.dense(x), training=training))
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)


@pytest.mark.parametrize("unroll", ["full", "head"])
@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_unroll_changes_no_weight_and_no_moving_statistic(unroll, variant):
    """With learning rate 0, only an assignment by the unroll could change a
    weight; the moving statistics must end as after a plain PseudoLabel step."""
    x, y = linear_problem(n=96)
    batch = make_batch(x, y, n_l=16, n_u=32)
    states = []
    for cls, kwargs in (
        (PseudoLabel, {}),
        (L2I, dict(unroll=unroll, variant=variant, unroll_learning_rate=0.5)),
    ):
        keras.utils.set_random_seed(8)
        model = cls(SSRRegressor(_NormBackbone()), **kwargs)
        _build(model, d=4, learning_rate=0.0)
        reg = model.regressor
        initial = [w.numpy().copy() for w in reg.weights]
        logs = model.train_step(batch)
        states.append([w.numpy() for w in reg.non_trainable_weights])
        for before, w in zip(initial, reg.weights, strict=True):
            if w.trainable:
                np.testing.assert_array_equal(before, w.numpy())
    assert np.isfinite(float(logs["holdout_loss"]))
    for plain, l2i in zip(*states, strict=True):
        np.testing.assert_array_equal(plain, l2i)
    moved = [not np.allclose(s, 0) and not np.allclose(s, 1) for s in states[0]]
    assert all(moved)  # the plain forward passes did update the statistics


def test_full_unroll_scores_the_holdout_in_training_mode(float64):
    """Independent theta*: a copy of the regressor stepped by a plain tape and
    assigned, scored on the hold-out batch with BatchNorm batch statistics."""
    eta = 0.5
    model = _l2i64(_NormBackbone(dropout=0.0), unroll="full", unroll_learning_rate=eta)
    batch = batch64(seed=9)
    parts = model.forward(batch)
    _, holdout_loss = model.imputation_gradient(batch, parts)

    reg = model.regressor
    copy = SSRRegressor(_NormBackbone(dropout=0.0), dtype="float64")
    copy.build((None, 3))
    copy.set_weights(reg.get_weights())
    (x_l, y_l), (_, x_s), (x_h, y_h) = (
        batch["labeled"],
        batch["unlabeled"],
        batch["holdout"],
    )
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            (tf.reshape(y_l, (-1, 1)) - copy.standardized(x_l, training=True)) ** 2
        ) + tf.reduce_mean((parts["z"] - copy.standardized(x_s, training=True)) ** 2)
    grads = tape.gradient(loss, copy.trainable_weights)
    for var, grad in zip(copy.trainable_weights, grads, strict=True):
        var.assign(var - eta * grad)

    def holdout(training):
        pred = copy.standardized(x_h, training=training)
        return float(tf.reduce_mean((tf.reshape(y_h, (-1, 1)) - pred) ** 2))

    expected = holdout(training=True)
    assert float(holdout_loss) == pytest.approx(expected, rel=1e-10)
    assert abs(holdout(training=False) - expected) > 1e-3


# ---------- fit(), XLA and MirroredStrategy ----------


def _dataset(steps=3):
    """Built once per test: `make_batch` depends on the global seed state."""
    x, y = linear_problem()
    return tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(steps)


def _fit(ds, strategy=None, jit_compile="auto", **kwargs):
    keras.utils.set_random_seed(5)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = compiled(
            L2I, make_regressor(), optimizer=keras.optimizers.Adam(1e-2), **kwargs
        )
    model.compile(optimizer=model.optimizer, jit_compile=jit_compile)
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
    return history, [w.numpy() for w in model.regressor.weights]


_HYPER = dict(unroll_learning_rate=0.5, imputation_learning_rate=5.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(variant="v2", unroll="full", tanh_unlabeled=True),
        dict(
            variant="v1",
            unroll="head",
            step="algorithm1",
            unroll_loss="unlabeled",
            imputer="mean_teacher",
            ema_decay=0.9,
        ),
    ],
)
def test_fit_with_jit_compile_matches_graph(kwargs):
    kwargs = dict(kwargs, **_HYPER)
    ds = _dataset()
    (h1, w1), (h2, w2) = (_fit(ds, jit_compile=jit, **kwargs) for jit in (False, True))
    assert set(L2I.loss_terms) <= set(h1)
    assert h1["holdout_loss"][0] == pytest.approx(h2["holdout_loss"][0], rel=1e-4)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(variant="v1", unroll="full"),
        dict(variant="v2", unroll="head", imputer="mean_teacher", ema_decay=0.9),
        dict(
            variant="v2",
            unroll="full",
            step="algorithm1",
            unroll_loss="unlabeled",
            tanh_unlabeled=True,
        ),
    ],
)
def test_mirrored_strategy_matches_one_device(two_device_strategy, kwargs):
    ds = _dataset()
    (h1, w1), (h2, w2) = (
        _fit(ds, strategy=s, **kwargs, **_HYPER) for s in (None, two_device_strategy)
    )
    for name in L2I.loss_terms:
        assert h1[name][0] == pytest.approx(h2[name][0], rel=1e-4, abs=1e-6)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ---------- configuration ----------


def test_get_config_round_trip_and_bad_options():
    model = L2I(
        make_regressor(),
        variant="v2",
        imputer="mean_teacher",
        unroll="head",
        unroll_learning_rate=0.3,
        imputation_learning_rate=2.0,
        tanh_unlabeled=True,
        step="algorithm1",
        unroll_loss="unlabeled",
        unroll_rate_factor=10.0,
        pseudo_label_mode="training",
        ema_decay=0.99,
        ema_warmup=True,
        unlabeled_weight=0.5,
        rampup_steps=10,
    )
    clone = L2I.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert (clone.step, clone.unroll_loss) == ("algorithm1", "unlabeled")
    assert clone.pseudo_label_mode == "training" and clone.imputer.warmup
    assert clone.unroll_rate_factor == 10.0
    assert isinstance(clone.imputer, EMATeacher) and clone.ema_decay == 0.99
    assert isinstance(L2I(make_regressor()).imputer, OwnPrediction)
    for name, bad, valid in (
        ("variant", "v3", "('v1', 'v2')"),
        ("imputer", "mixmatch", "('pseudo_label', 'mean_teacher')"),
        ("unroll", "adam", "('full', 'head')"),
        ("step", "three", "('combined', 'algorithm1')"),
        ("unroll_loss", "labeled", "('both', 'unlabeled')"),
    ):
        with pytest.raises(ValueError, match=f"{name} must be one of") as error:
            L2I(make_regressor(), **{name: bad})
        assert valid in str(error.value)


# ---------- Algorithm 1: two optimizer steps, against a numpy replay ----------


def _linear_l2i(lr=0.2, **kwargs):
    """L2I on f(x) = x W + b (identity backbone) with SGD and a step decay
    x0.5 per train step: Appendix B.2's linear model."""
    regressor = SSRRegressor(keras.layers.Identity(dtype="float64"), dtype="float64")
    model = L2I(regressor, dtype="float64", step="algorithm1", **kwargs)
    model.build((None, 3))
    decay = keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=1, decay_rate=0.5, staircase=True
    )
    model.compile(optimizer=keras.optimizers.SGD(decay))
    model.build_optimizers()
    return model


def _np_algorithm1_step(student, teacher, data, t, spec):
    """One train step of Algorithm 1 in numpy (means, as `L2I`).

    (1) theta-hat = theta - lr grad(C^T + lam_t C^U(z0)), z0 = psi(weak);
    (2) z = f_theta-hat(weak); theta* = theta-hat - eta grad([C^T +] C^U(z)),
        eta = factor * lr; dC^H/dz_u = 4 eta / (n_h n_u) sum_h e_h
        (x_s,u . x_h + 1) (eq. 11 with means and the bias as a constant
        feature);
    (3) V1: theta-hat - lr grad C^U(z - eta_z dC^H/dz); V2: theta-hat - lr
        (dC^H/dz)(dz/dtheta-hat), dz_u/dW = x_w,u, dz_u/db = 1.
    """
    x_l, y_l, x_w, x_s, x_h, y_h = data
    n_l, n_u, n_h = len(x_l), len(x_s), len(x_h)
    lr = float(np.float32(spec["lr"])) * 0.5**t  # the float32 schedule
    lam = spec["lam"] * min(1.0, t / spec["rampup"])
    eta = spec["factor"] * lr  # the unroll's step: a factor of the current rate

    def f(x, theta):
        return x @ theta[0] + theta[1]

    def step(theta, grad_r_l, grad_r_s, x_s_used=x_s):
        """theta - lr * (x_l^T grad_r_l + x_s^T grad_r_s) (and the bias)."""
        g_w = x_l.T @ grad_r_l + x_s_used.T @ grad_r_s
        g_b = grad_r_l.sum(0) + grad_r_s.sum(0)
        return [theta[0] - lr * g_w, theta[1] - lr * g_b]

    z0 = f(x_w, teacher if teacher is not None else student)
    e_l, e_u = f(x_l, student) - y_l, f(x_s, student) - z0
    hat = step(student, 2 / n_l * e_l, lam * 2 / n_u * e_u)
    z = f(x_w, hat)
    e_l = f(x_l, hat) - y_l
    if spec["unroll_loss"] == "unlabeled":
        e_l = 0 * e_l
    g_w = 2 / n_l * x_l.T @ e_l + 2 / n_u * x_s.T @ (f(x_s, hat) - z)
    g_b = 2 / n_l * e_l.sum(0) + 2 / n_u * (f(x_s, hat) - z).sum(0)
    star = [hat[0] - eta * g_w, hat[1] - eta * g_b]
    e_h = f(x_h, star) - y_h
    grad_z = 4 * eta / (n_h * n_u) * (x_s @ x_h.T + 1) @ e_h
    zero_l = np.zeros_like(e_l)
    if spec["variant"] == "v1":
        z_hat = z - spec["eta_z"] * grad_z
        new = step(hat, zero_l, 2 / n_u * (f(x_s, hat) - z_hat))
    else:
        new = step(hat, zero_l, grad_z, x_s_used=x_w)
    return new, float(np.mean(e_h**2))


@pytest.mark.parametrize(
    "variant, unroll_loss, imputer, warmup, factor",
    [
        ("v1", "both", "pseudo_label", False, 1.0),
        ("v1", "unlabeled", "mean_teacher", True, 1.0),
        ("v2", "unlabeled", "pseudo_label", False, 4.0),
        ("v2", "both", "mean_teacher", False, 4.0),
    ],
)
def test_algorithm1_matches_a_numpy_replay(
    float64, variant, unroll_loss, imputer, warmup, factor
):
    """Three train steps: two SGD steps each, the lambda ramp and the step
    decay counted in train steps, the unroll's step a factor of the current
    rate, the EMA teacher updated once per step (with the warm-up decay
    min(1 - 1/(k+1), decay) at its k-th update)."""
    spec = dict(
        lr=0.2,
        lam=0.75,
        rampup=2,
        eta_z=2.0,
        variant=variant,
        unroll_loss=unroll_loss,
        factor=factor,
    )
    decay = 0.5
    model = _linear_l2i(
        variant=variant,
        unroll_loss=unroll_loss,
        imputer=imputer,
        ema_decay=decay,
        ema_warmup=warmup,
        unroll_rate_factor=factor,
        imputation_learning_rate=spec["eta_z"],
        unlabeled_weight=spec["lam"],
        rampup_steps=spec["rampup"],
    )
    batch = batch64(seed=11)
    (x_l, y_l), (x_w, x_s), (x_h, y_h) = (
        batch["labeled"],
        batch["unlabeled"],
        batch["holdout"],
    )
    data = [v.numpy() for v in (x_l, y_l, x_w, x_s, x_h, y_h)]
    data[1], data[5] = data[1][:, None], data[5][:, None]
    student = [v.numpy() for v in model.regressor.head_params()]
    teacher = [w.copy() for w in student] if imputer == "mean_teacher" else None
    for t in range(3):
        student, holdout_loss = _np_algorithm1_step(student, teacher, data, t, spec)
        if teacher is not None:
            rate = min(1 - 1 / (t + 1), decay) if warmup else decay
            teacher = [
                rate * a + (1 - rate) * b for a, b in zip(teacher, student, strict=True)
            ]
        model.reset_metrics()
        logs = model.train_step(batch)
        for got, expected in zip(model.regressor.head_params(), student, strict=True):
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-13)
        assert float(logs["holdout_loss"]) == pytest.approx(holdout_loss, rel=1e-10)
        assert int(model.optimizer.iterations.numpy()) == 2 * (t + 1)
    if teacher is not None:
        for got, expected in zip(
            model.imputer.teacher.head.weights, teacher, strict=True
        ):
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_algorithm1_counts_a_schedule_in_train_steps():
    model = _linear_l2i(lr=1.0)
    schedule = model.optimizer.get_config()["learning_rate"]
    clone = keras.optimizers.schedules.deserialize(schedule)
    assert [float(clone(i)) for i in range(4)] == [1.0, 1.0, 0.5, 0.5]
    model.build_optimizers()  # a second call does not wrap twice
    assert float(model.optimizer.learning_rate) == 1.0
    assert _build(L2I(make_regressor(), step="algorithm1"), d=4).optimizer_steps == 2


def test_v2_imputation_in_training_mode_uses_dropout():
    """pseudo_label_mode="training": psi = f(weak) with dropout, the value of a
    hand-run training forward after the step's labeled and strong forwards."""
    x, y = linear_problem()
    batch = make_batch(x, y)
    regressor = SSRRegressor(MLPBackbone((16,), dropout=0.5))
    model = _build(L2I(regressor, variant="v2", pseudo_label_mode="training"), d=4)
    saved = [v.numpy().copy() for v in regressor.variables]
    psi = model.forward(batch)["psi"].numpy()
    for variable, value in zip(regressor.variables, saved, strict=True):
        variable.assign(value)
    (x_l, _), (x_w, x_s) = batch["labeled"], batch["unlabeled"]
    regressor.features(x_l, training=True)
    regressor.features(x_s, training=True)
    np.testing.assert_array_equal(psi, regressor.standardized(x_w, training=True))
    assert not np.allclose(psi, regressor.standardized(x_w, training=True))
    default = _build(
        L2I(SSRRegressor(MLPBackbone((16,), dropout=0.5)), variant="v2"), d=4
    )
    np.testing.assert_array_equal(
        default.forward(batch)["psi"].numpy(),
        default.regressor.standardized(batch["unlabeled"][0]).numpy(),
    )
