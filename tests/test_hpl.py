import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.bilevel.head_unroll import dense_apply
from keras_ssr.losses.heteroscedastic_loss import heteroscedastic_loss
from keras_ssr.methods.hpl import HPL
from keras_ssr.methods.pseudo_label import PseudoLabel
from keras_ssr.methods.registry import get_method
from tests.helpers import (
    batch64,
    central_difference,
    compiled,
    linear_problem,
    make_batch,
    make_regressor,
)


def _hpl64(**kwargs):
    regressor = make_regressor(hidden=(5,), dtype="float64")
    model = HPL(regressor, hidden_units=6, dtype="float64", **kwargs)
    model.build((None, 3))
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.build_optimizers()
    batch = batch64(n_u=12)
    for _ in range(3):  # non-trivial head, Adam slots and g_phi
        model.train_step(batch)
    return model, batch


def _outer_value(model, batch):
    return float(model._hypergradient(batch, model.forward(batch))[1])


@pytest.mark.parametrize("unroll", ["sgd", "adam"])
def test_hypergradient_matches_finite_differences(float64, unroll):
    model, batch = _hpl64(unroll=unroll, unroll_learning_rate=0.3)
    grads, _ = model._hypergradient(batch, model.forward(batch))
    eps = 1e-6
    for var, grad in zip(
        model.uncertainty_learner.trainable_weights, grads, strict=True
    ):
        flat = var.numpy().ravel()

        def outer_at(values, var=var):
            var.assign(values.reshape(var.shape))
            return _outer_value(model, batch)

        for i in range(0, flat.size, max(1, flat.size // 4)):
            fd = central_difference(outer_at, flat, i, eps)
            var.assign(flat.reshape(var.shape))
            assert grad.numpy().ravel()[i] == pytest.approx(fd, rel=1e-5, abs=1e-10)
    assert any(np.abs(g.numpy()).max() > 1e-6 for g in grads)


def test_sgd_hypergradient_is_theorem_1_gradient_alignment(float64):
    alpha = 0.3
    model, batch = _hpl64(unroll="sgd", unroll_learning_rate=alpha)
    parts = model.forward(batch)
    grads, _ = model._hypergradient(batch, parts)
    # Independent computation: -alpha * d/dphi <dL_inner/dW (phi), sg(dL_outer/dW')>.
    f_l, f_s, yhat = (
        tf.stop_gradient(parts[k]) for k in ("features_l", "features_s", "yhat")
    )
    f_h = model.regressor.features(batch["holdout"][0])
    y_l = tf.reshape(batch["labeled"][1], (-1, 1))
    y_h = tf.reshape(batch["holdout"][1], (-1, 1))
    head = [tf.identity(v) for v in model.regressor.head_params()]
    phi = model.uncertainty_learner.trainable_weights
    lam = float(parts["lam"])

    def inner_gradient():  # grad_W L_inner(W, phi), reference form written out
        with tf.GradientTape() as tape:
            tape.watch(head)
            r = dense_apply(f_s, head)
            z = model.uncertainty_learner((r, yhat))
            labeled = tf.reduce_mean((y_l - dense_apply(f_l, head)) ** 2)
            unlabeled = tf.reduce_mean(0.5 * tf.exp(-z) * (yhat - r) ** 2 + 0.5 * z)
            inner = labeled + lam * unlabeled
        return tape.gradient(inner, head)

    g_inner_fn = inner_gradient()
    new_head = [h - alpha * g for h, g in zip(head, g_inner_fn, strict=True)]
    with tf.GradientTape() as tape_outer:
        tape_outer.watch(new_head)
        outer = tf.reduce_mean((y_h - dense_apply(f_h, new_head)) ** 2)
    g_outer = [tf.stop_gradient(g) for g in tape_outer.gradient(outer, new_head)]
    with tf.GradientTape() as tape_phi:
        g_inner = inner_gradient()
        alignment = sum(
            tf.reduce_sum(a * b) for a, b in zip(g_inner, g_outer, strict=True)
        )
    expected = tape_phi.gradient(alignment, phi)
    for got, exp in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, -alpha * exp.numpy(), rtol=1e-8, atol=1e-14)


def test_phi_changes_only_on_meta_steps():
    x, y = linear_problem()
    model = compiled(
        HPL, make_regressor(), optimizer=keras.optimizers.Adam(1e-2), meta_period=3
    )
    batch = make_batch(x, y)
    changed = []
    for _ in range(7):
        before = [w.numpy().copy() for w in model.uncertainty_learner.weights]
        model.train_step(batch)
        after = model.uncertainty_learner.weights
        changed.append(
            any(
                not np.array_equal(b, a.numpy())
                for b, a in zip(before, after, strict=True)
            )
        )
    assert changed == [True, False, False, True, False, False, True]
    assert int(model.phi_optimizer.iterations.numpy()) == 3


def test_theta_update_equals_pseudo_label_when_log_variance_is_zero():
    """z = 0 (sigma^2 = 1): the reference form is half the PL MSE, so HPL with
    lambda = 2 takes exactly PseudoLabel's lambda = 1 step."""
    x, y = linear_problem()
    batch = make_batch(x, y)
    weights = []
    for cls, lam in ((PseudoLabel, 1.0), (HPL, 2.0)):
        keras.utils.set_random_seed(11)
        model = compiled(cls, make_regressor(), unlabeled_weight=lam)
        if cls is HPL:
            out = model.uncertainty_learner.log_variance
            out.kernel.assign(tf.zeros_like(out.kernel))
            out.bias.assign(tf.zeros_like(out.bias))
            assert np.all(model.forward(batch)["z"].numpy() == 0)
        model.train_step(batch)
        weights.append(model.regressor.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unrolled_head_never_overwrites_the_real_head():
    x, y = linear_problem()
    model = compiled(HPL, make_regressor(), optimizer=keras.optimizers.SGD(0.0))
    batch = make_batch(x, y)
    head = [w.numpy().copy() for w in model.regressor.head_params()]
    model.train_step(batch)  # lr 0: only an overwrite could change the head
    for before, after in zip(head, model.regressor.head_params(), strict=True):
        np.testing.assert_array_equal(before, after.numpy())


def test_joint_ablation_trains_phi_on_the_inner_loss():
    x, y = linear_problem()
    batch = make_batch(x, y)
    model = compiled(get_method("hpl_joint"), make_regressor(), unlabeled_weight=1.0)
    assert not model.bilevel and "outer_loss" not in model.loss_trackers
    grads, _ = model.compute_gradients(batch)
    phi = model.uncertainty_learner.trainable_weights
    with tf.GradientTape() as tape:
        parts = model.forward(batch)
        lam = parts["lam"]
        expected_loss = (
            heteroscedastic_loss(parts["yhat"], parts["r"], parts["z"]) * lam
        )
    expected = tape.gradient(expected_loss, phi)
    for got, exp in zip(grads["phi"], expected, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-8)
    assert model.variable_groups()["phi"].variables == phi


def test_separate_head_optimizer_updates_only_the_head():
    x, y = linear_problem()
    model = compiled(HPL, make_regressor(), head_learning_rate=1e-2)
    groups = model.variable_groups()
    assert not {id(v) for v in model.regressor.head_params()} & {
        id(v) for v in groups["backbone"].variables
    }
    assert groups["head"].optimizer is model.head_optimizer
    model.train_step(make_batch(x, y))
    assert int(model.head_optimizer.iterations.numpy()) == 1


@pytest.mark.parametrize("kwargs", [{}, {"meta_period": 2, "unroll": "adam"}])
def test_mirrored_strategy_matches_one_device(two_device_strategy, kwargs):
    x, y = linear_problem()
    ds = tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(4)
    results = []
    for strategy in (None, two_device_strategy):
        keras.utils.set_random_seed(5)
        with (strategy or tf.distribute.get_strategy()).scope():
            model = compiled(
                HPL, make_regressor(), optimizer=keras.optimizers.Adam(1e-2), **kwargs
            )
        history = model.fit(ds, epochs=1, verbose=0, shuffle=False).history
        weights = model.regressor.weights + model.uncertainty_learner.weights
        results.append((history, [w.numpy() for w in weights]))
    (h1, w1), (h2, w2) = results
    for name in ("loss", "outer_loss", "log_variance"):
        assert h1[name][0] == pytest.approx(h2[name][0], rel=1e-4, abs=1e-6)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_jit_compile_matches_eager_graph():
    x, y = linear_problem()
    ds = tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(3)
    weights = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        model = compiled(HPL, make_regressor(), meta_period=2)
        model.compile(optimizer=model.optimizer, jit_compile=jit)
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        weights.append([w.numpy() for w in model.uncertainty_learner.weights])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_get_config_round_trip_and_bad_options():
    model = HPL(
        make_regressor(),
        unroll="adam",
        meta_period=5,
        loss_form="paper",
        input_form="paper",
        outer_log_variance_weight=0.1,
        head_learning_rate=1e-3,
    )
    clone = HPL.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.uncertainty_learner.input_form == "paper"
    with pytest.raises(ValueError, match="unroll must be one of"):
        HPL(make_regressor(), unroll="rmsprop")
    with pytest.raises(ValueError, match="meta_period must be >= 1"):
        HPL(make_regressor(), meta_period=0)


def test_zero_unroll_learning_rate_is_respected():
    """eta = 0 leaves W' = W, which does not depend on phi: zero hypergradient."""
    x, y = linear_problem()
    model = compiled(HPL, make_regressor(), unroll_learning_rate=0.0)
    batch = make_batch(x, y)
    grads, _ = model._hypergradient(batch, model.forward(batch))
    assert all(np.all(g.numpy() == 0) for g in grads)
