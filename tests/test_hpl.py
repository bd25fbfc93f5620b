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


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"meta_period": 2, "unroll": "adam"},
        {
            "meta_period": 2,
            "meta_order": "phi_first",
            "head_learning_rate": 1e-2,
            "outer_log_variance_weight": 0.5,
        },
    ],
)
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


@pytest.mark.parametrize(
    "kwargs", [{}, {"meta_order": "phi_first", "holdout_mode": "training"}]
)
def test_jit_compile_matches_eager_graph(kwargs):
    x, y = linear_problem()
    ds = tf.data.Dataset.from_tensors(make_batch(x, y)).repeat(3)
    weights = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        model = compiled(HPL, make_regressor(), meta_period=2, **kwargs)
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
        meta_weight_decay=1e-5,
        meta_lr_decay=True,
        meta_order="phi_first",
        holdout_mode="training",
        pseudo_label_mode="training",
    )
    clone = HPL.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.uncertainty_learner.input_form == "paper"
    assert (clone.meta_order, clone.holdout_mode) == ("phi_first", "training")
    assert clone.pseudo_label_mode == "training" and clone.meta_lr_decay
    for kwargs, message in (
        ({"unroll": "rmsprop"}, "unroll must be one of"),
        ({"meta_period": 0}, "meta_period must be >= 1"),
        ({"meta_order": "phi_last"}, "meta_order must be one of"),
        ({"holdout_mode": "eval"}, "holdout_mode must be one of"),
        ({"pseudo_label_mode": "eval"}, "pseudo_label_mode must be one of"),
        ({"meta_weight_decay": -1.0}, "meta_weight_decay must be"),
        ({"head_learning_rate": 0.0}, "head_learning_rate must be"),
    ):
        with pytest.raises(ValueError, match=message):
            HPL(make_regressor(), **kwargs)


def test_zero_unroll_learning_rate_is_respected():
    """eta = 0 leaves W' = W, which does not depend on phi: zero hypergradient."""
    x, y = linear_problem()
    model = compiled(HPL, make_regressor(), unroll_learning_rate=0.0)
    batch = make_batch(x, y)
    grads, _ = model._hypergradient(batch, model.forward(batch))
    assert all(np.all(g.numpy() == 0) for g in grads)


# ---------- independent numpy reference of the loss forms and the head step ----------


def _np_g_phi(phi, r, yhat):
    """g_phi in numpy: reference input [r - yhat, r], ReLU layer, clip."""
    kernel1, bias1, kernel2, bias2 = phi
    inputs = np.concatenate([r - yhat, r], axis=-1)
    return np.clip(np.maximum(inputs @ kernel1 + bias1, 0) @ kernel2 + bias2, -10, 10)


def _np_state(model, batch, parts):
    """The step's inputs as numpy arrays (features from the model)."""
    reg = model.regressor
    return {
        "f_l": parts["features_l"].numpy(),
        "f_s": parts["features_s"].numpy(),
        "yhat": parts["yhat"].numpy(),
        "f_h": reg.features(batch["holdout"][0]).numpy(),
        "y_l": batch["labeled"][1].numpy()[:, None],
        "y_h": batch["holdout"][1].numpy()[:, None],
        "head": [v.numpy() for v in reg.head_params()],
        "phi": [w.numpy() for w in model.uncertainty_learner.trainable_weights],
        "lam": float(parts["lam"]),
    }


def _np_inner_loss(s, form):
    """L_inner (eq. 5): paper sums of eq. 3, or the reference's means with
    exp(-z) / 2 and z / 2; returns `(L_inner, L_u)`."""
    w, b = s["head"]
    r = s["f_s"] @ w + b
    z = _np_g_phi(s["phi"], r, s["yhat"])
    labeled = (s["y_l"] - s["f_l"] @ w - b) ** 2
    unlabeled = np.exp(-z) * (s["yhat"] - r) ** 2 + z
    if form == "paper":
        l_u = unlabeled.sum()
        return labeled.sum() + s["lam"] * l_u, l_u
    l_u = np.mean(0.5 * unlabeled)
    return labeled.mean() + s["lam"] * l_u, l_u


def _np_inner_grad(s, head, phi, form):
    """d L_inner / d(W, b) in closed form (z = g_phi(r, yhat) is stop-gradient
    in r inside g_phi, so only the explicit r's are differentiated)."""
    w, b = head
    r = s["f_s"] @ w + b
    z = _np_g_phi(phi, r, s["yhat"])
    e_l = s["f_l"] @ w + b - s["y_l"]
    e_u = np.exp(-z) * (r - s["yhat"])
    if form == "paper":  # d/dr sum(exp(-z)(yhat - r)^2 + z)
        c_l, c_u = 2.0, 2.0 * s["lam"]
    else:  # d/dr mean(exp(-z)/2 (yhat - r)^2 + z/2)
        c_l, c_u = 2.0 / len(e_l), s["lam"] / len(e_u)
    return [
        c_l * s["f_l"].T @ e_l + c_u * s["f_s"].T @ e_u,
        c_l * e_l.sum(0) + c_u * e_u.sum(0),
    ]


def _head_gradient(model, grads):
    """The head's (kernel, bias) entries of a gradient list of the regressor."""
    weights = model.regressor.trainable_weights
    return [
        grads[[id(w) for w in weights].index(id(v))]
        for v in model.regressor.head_params()
    ]


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_inner_loss_forms_match_numpy(float64, form):
    """Paper: sum (y - f)^2 + lam (sum exp(-z)(yhat - r)^2 + sum z) (eq. 3, 5);
    reference: means with exp(-z)/2 and z/2; and theta's head gradient."""
    model, batch = _hpl64(loss_form=form, unlabeled_weight=0.75)
    parts = model.forward(batch)
    s = _np_state(model, batch, parts)
    inner, l_u = _np_inner_loss(s, form)
    terms = model._terms(batch, parts)
    assert float(terms["loss"]) == pytest.approx(inner, rel=1e-12)
    assert float(terms["unlabeled_loss"]) == pytest.approx(l_u, rel=1e-12)
    np.testing.assert_allclose(
        parts["z"],
        _np_g_phi(s["phi"], s["f_s"] @ s["head"][0] + s["head"][1], s["yhat"]),
        rtol=1e-12,
    )
    grads = _head_gradient(model, model.compute_gradients(batch)[0]["regressor"])
    expected = _np_inner_grad(s, s["head"], s["phi"], form)
    for got, exp in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-13)


def _outer_fd(outer_at, phi, eps=1e-6):
    """Central differences of a numpy `outer_at(phi)` in every entry of phi."""
    grads = []
    for k, w in enumerate(phi):
        grad = np.zeros_like(w)
        for index in np.ndindex(w.shape):
            values = []
            for sign in (1, -1):
                shifted = [p.copy() for p in phi]
                shifted[k][index] += sign * eps
                values.append(outer_at(shifted))
            grad[index] = (values[0] - values[1]) / (2 * eps)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_lambda2_hypergradient_matches_finite_differences(float64, form):
    """L_outer = reduce_k (y_k - f_h W'(phi))^2 - lambda2 mean_k g_phi(W' f_k, y_k)
    with W'(phi) = W - alpha dL_inner/dW (numpy, eq. 7) and g_phi's input held
    at its value (stop-gradient, as the reference's `.detach()`), taken with
    the head after the step, W' (reference code), not before it."""
    alpha, lambda2 = 0.3, 0.5
    model, batch = _hpl64(
        unroll="sgd",
        unroll_learning_rate=alpha,
        outer_log_variance_weight=lambda2,
        loss_form=form,
    )
    parts = model.forward(batch)
    grads, outer = model._hypergradient(batch, parts)
    s = _np_state(model, batch, parts)
    reduce = np.sum if form == "paper" else np.mean

    def unrolled(phi):
        step = _np_inner_grad(s, s["head"], phi, form)
        return [h - alpha * g for h, g in zip(s["head"], step, strict=True)]

    def predictions(head):
        return s["f_h"] @ head[0] + head[1]

    def outer_at(phi, g_phi_input):
        mse = reduce((s["y_h"] - predictions(unrolled(phi))) ** 2)
        return mse - lambda2 * np.mean(_np_g_phi(phi, g_phi_input, s["y_h"]))

    after = predictions(unrolled(s["phi"]))  # W' f_h
    assert float(outer) == pytest.approx(outer_at(s["phi"], after), rel=1e-12)
    expected = _outer_fd(lambda phi: outer_at(phi, after), s["phi"])
    scale = max(np.abs(e).max() for e in expected)
    for got, exp in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-7 * scale)
    # The test tells W' from W: g_phi on the head before the step differs.
    before = _outer_fd(lambda phi: outer_at(phi, predictions(s["head"])), s["phi"])
    gap = max(np.abs(b - e).max() for b, e in zip(before, expected, strict=True))
    assert gap > 1e-3 * scale


def _keras_adam_l2_step(p, g, m, v, t, lr, l2, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """One AdamL2 step in numpy with Keras' update rule (epsilon added to
    sqrt(v); powers and l2 through float32, as Keras casts Python floats)."""
    g = g + float(np.float32(l2)) * p
    m = m + (g - m) * (1 - beta_1)
    v = v + (g**2 - v) * (1 - beta_2)
    alpha = (
        lr
        * np.sqrt(1 - float(np.float32(beta_2)) ** t)
        / (1 - float(np.float32(beta_1)) ** t)
    )
    return p - m * alpha / (np.sqrt(v) + eps), m, v


def test_head_optimizer_copies_the_compiled_adam_l2_and_its_schedule(float64):
    """head_learning_rate: the head's optimizer is an AdamL2 like the compiled
    one (same l2, the step decay started at the head's rate); its updates are
    a numpy Adam with L2 on the closed-form head gradient."""
    from keras_ssr.optimizers.adam_l2 import AdamL2

    l2, head_rate = 0.1, 0.2
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.01, decay_steps=1, decay_rate=0.5, staircase=True
    )
    model = HPL(
        make_regressor(hidden=(5,), dtype="float64"),
        hidden_units=6,
        head_learning_rate=head_rate,
        meta_period=2,
        dtype="float64",
    )
    model.build((None, 3))
    model.compile(optimizer=AdamL2(schedule, l2=l2))
    model.build_optimizers()
    head_optimizer = model.head_optimizer
    assert type(head_optimizer) is AdamL2 and head_optimizer.l2 == l2
    rate = head_optimizer.get_config()["learning_rate"]["config"]
    assert rate["initial_learning_rate"] == head_rate and rate["decay_rate"] == 0.5
    batch = batch64(n_u=12)
    head = [v.numpy() for v in model.regressor.head_params()]
    slots = [[np.zeros_like(h) for h in head] for _ in range(2)]
    for t in range(3):
        s = _np_state(model, batch, model.forward(batch))
        grads = _np_inner_grad(s, s["head"], s["phi"], "reference")
        lr = float(np.float32(head_rate)) * 0.5**t  # the float32 schedule
        for i, (p, g) in enumerate(zip(head, grads, strict=True)):
            head[i], slots[0][i], slots[1][i] = _keras_adam_l2_step(
                p, g, slots[0][i], slots[1][i], t + 1, lr, l2
            )
        model.train_step(batch)
        for expected, got in zip(head, model.regressor.head_params(), strict=True):
            np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    assert int(head_optimizer.iterations.numpy()) == 3
    assert int(model.optimizer.iterations.numpy()) == 3


def test_head_optimizer_needs_build_optimizers():
    model = HPL(make_regressor(), head_learning_rate=1e-3)
    model.build((None, 4))
    model.compile(optimizer=keras.optimizers.Adam())
    with pytest.raises(RuntimeError, match="build_optimizers"):
        model.variable_groups()


def test_phi_optimizer_weight_decay_and_schedule():
    from keras_ssr.optimizers.adam_l2 import AdamL2

    schedule = keras.optimizers.schedules.ExponentialDecay(
        1e-3, decay_steps=10, decay_rate=0.1, staircase=True
    )
    model = HPL(
        make_regressor(),
        meta_weight_decay=1e-5,
        meta_lr_decay=True,
        meta_learning_rate=2e-4,
    )
    model.build((None, 4))
    model.compile(optimizer=AdamL2(schedule, l2=1e-3))
    model.build_optimizers()
    phi = model.phi_optimizer
    assert type(phi) is AdamL2 and phi.l2 == 1e-5
    rate = phi.get_config()["learning_rate"]["config"]
    assert (rate["initial_learning_rate"], rate["decay_steps"]) == (2e-4, 10)
    assert model.variable_groups()["phi"].optimizer is phi
    assert phi.built and len(phi.variables) > 1
    plain = compiled(HPL, make_regressor())
    assert type(plain.phi_optimizer) is keras.optimizers.Adam
    assert float(plain.phi_optimizer.learning_rate) == pytest.approx(1e-4)


def _dropout_regressor(rate):
    from keras_ssr.models.mlp_backbone import MLPBackbone
    from keras_ssr.models.ssr_regressor import SSRRegressor

    return SSRRegressor(MLPBackbone((16,), dropout=rate))


def test_holdout_features_in_training_mode():
    """training: dropout active (two calls differ), the values of a hand-run
    training forward; inference (default): the inference forward, bitwise."""
    x, y = linear_problem()
    batch = make_batch(x, y)
    x_h = batch["holdout"][0]
    model = compiled(HPL, _dropout_regressor(0.5), holdout_mode="training")
    reg = model.regressor
    saved = [v.numpy().copy() for v in reg.variables]  # incl. the dropout seed
    first = model.holdout_features(batch, None)[0].numpy()
    second = model.holdout_features(batch, None)[0].numpy()
    assert not np.allclose(first, second)
    for variable, value in zip(reg.variables, saved, strict=True):
        variable.assign(value)
    np.testing.assert_array_equal(first, reg.features(x_h, training=True).numpy())
    default = compiled(HPL, _dropout_regressor(0.5))
    assert default.holdout_mode == "inference"
    features = default.holdout_features(batch, None)[0].numpy()
    np.testing.assert_array_equal(features, default.regressor.features(x_h).numpy())
    no_dropout = compiled(HPL, _dropout_regressor(0.0), holdout_mode="training")
    np.testing.assert_array_equal(
        no_dropout.holdout_features(batch, None)[0].numpy(),
        no_dropout.regressor.features(x_h).numpy(),
    )


def test_phi_first_steps_theta_with_the_updated_g_phi():
    """Reference order: phi_{t+1} from the unroll at theta_t, then
    theta_{t+1} = theta_t - lr grad L_inner(theta_t, phi_{t+1}); the paper's
    order steps theta with phi_t. phi_{t+1} is the same in both."""
    x, y = linear_problem()
    batch = make_batch(x, y)
    runs = {}
    for order in ("simultaneous", "phi_first"):
        keras.utils.set_random_seed(3)
        model = compiled(HPL, make_regressor(), meta_order=order)
        assert ("phi" in model.variable_groups()) == (order == "simultaneous")
        model.train_step(batch)
        runs[order] = (
            [w.numpy() for w in model.regressor.trainable_weights],
            [w.numpy() for w in model.uncertainty_learner.trainable_weights],
        )
    for a, b in zip(runs["simultaneous"][1], runs["phi_first"][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert not np.allclose(runs["simultaneous"][1][0], _initial_phi(3)[0])
    for order, phi in (
        ("simultaneous", _initial_phi(3)),
        ("phi_first", runs["phi_first"][1]),
    ):
        keras.utils.set_random_seed(3)
        fresh = compiled(HPL, make_regressor())
        for w, value in zip(
            fresh.uncertainty_learner.trainable_weights, phi, strict=True
        ):
            w.assign(value)
        theta = fresh.regressor.trainable_weights
        with tf.GradientTape() as tape:
            loss = fresh.compute_losses(batch)["loss"]
        expected = [
            w.numpy() - 0.1 * g.numpy()
            for w, g in zip(theta, tape.gradient(loss, theta), strict=True)
        ]
        for got, exp in zip(runs[order][0], expected, strict=True):
            np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-7)


def _initial_phi(seed):
    keras.utils.set_random_seed(seed)
    model = compiled(HPL, make_regressor())
    return [w.numpy() for w in model.uncertainty_learner.trainable_weights]
