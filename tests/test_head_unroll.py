"""Tests of the functional head unroll against independent math (float64).

Problem (HPL's form, means instead of sums):
    L_inner(W, b; phi) = mean((y_l - F_l W - b)^2)
                         + lam * mean(exp(-z) (yhat - F_u W - b)^2 + z),
    z = g_phi(r_u, yhat) with r_u = F_u W + b (stop-gradient inside g_phi),
    L_outer(W', b') = mean((y_h - F_h W' - b')^2).
The reference values use closed-form gradients in numpy, never `unroll_head`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.bilevel.head_unroll import (
    adam_step,
    dense_apply,
    read_adam_state,
    unroll_head,
)
from keras_ssr.models.uncertainty_learner import UncertaintyLearner
from keras_ssr.optimizers.adam_l2 import AdamL2

LAM = 0.7
N, D = 8, 3


def _problem(dtype="float64", seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.normal(size=shape).astype(dtype)

    data = {
        "F_l": normal(N, D),
        "y_l": normal(N, 1),
        "F_u": normal(N, D),
        "yhat": normal(N, 1),
        "F_h": normal(N, D),
        "y_h": normal(N, 1),
    }
    head = [normal(D, 1), normal(1)]
    return data, head


def _learner(dtype="float64"):
    learner = UncertaintyLearner(hidden_units=4, dtype=dtype)
    learner.build(((None, 1), (None, 1)))
    return learner


# ---------- the method under test: hypergradient through unroll_head ----------


def _inner_loss(learner, data):
    def loss(params):
        r_u = dense_apply(data["F_u"], params)
        z = learner((r_u, data["yhat"]))
        supervised = tf.reduce_mean(
            (data["y_l"] - dense_apply(data["F_l"], params)) ** 2
        )
        unsupervised = tf.reduce_mean(tf.exp(-z) * (data["yhat"] - r_u) ** 2 + z)
        return supervised + LAM * unsupervised

    return loss


def _hypergradient(learner, head, data, **unroll_kwargs):
    with tf.GradientTape() as outer:
        new_head, _ = unroll_head(head, _inner_loss(learner, data), **unroll_kwargs)
        outer_loss = tf.reduce_mean(
            (data["y_h"] - dense_apply(data["F_h"], new_head)) ** 2
        )
    return outer.gradient(outer_loss, learner.trainable_variables)


# ---------- independent numpy reference ----------


def _np_log_variance(weights, r, yhat):
    kernel1, bias1, kernel2, bias2 = weights
    hidden = np.maximum(np.concatenate([r - yhat, r], axis=-1) @ kernel1 + bias1, 0)
    return np.clip(hidden @ kernel2 + bias2, -10.0, 10.0)


def _np_inner_grad(head, data, z):
    kernel, bias = head
    e_l = data["y_l"] - data["F_l"] @ kernel - bias
    e_u = (data["yhat"] - data["F_u"] @ kernel - bias) * np.exp(-z)
    g_kernel = -2 * data["F_l"].T @ e_l / N - LAM * 2 * data["F_u"].T @ e_u / N
    g_bias = -2 * e_l.sum(0) / N - LAM * 2 * e_u.sum(0) / N
    return [g_kernel, g_bias]


def _np_outer(head, data):
    kernel, bias = head
    e_h = data["y_h"] - data["F_h"] @ kernel - bias
    grad = [-2 * data["F_h"].T @ e_h / N, -2 * e_h.sum(0) / N]
    return np.mean(e_h**2), grad


def _np_adam(head, grads, state, lr):
    """Kingma & Ba's Adam with Keras' conventions, in numpy.

    Keras adds epsilon to sqrt(v), not to sqrt(v_hat) ("epsilon hat"), and
    computes the bias-correction powers from `cast(beta)`, i.e. float32(beta)
    for Python floats; `lr` is Keras' float32 learning-rate variable. A
    coupled L2 (`state.l2`, torch's weight_decay) is added to the gradient
    first, cast as `AdamL2` casts it (through float32).
    """
    t = float(state.iterations) + 1
    lr = float(np.float32(lr))
    correction_1 = 1 - float(np.float32(state.beta_1)) ** t
    correction_2 = 1 - float(np.float32(state.beta_2)) ** t
    new = []
    for p, g, m, v in zip(head, grads, state.momentums, state.velocities, strict=True):
        g = g + float(np.float32(state.l2)) * p
        m = state.beta_1 * np.asarray(m) + (1 - state.beta_1) * g
        v = state.beta_2 * np.asarray(v) + (1 - state.beta_2) * g**2
        m_hat = m / correction_1
        v_hat = v / correction_2
        eps_hat = state.epsilon / np.sqrt(correction_2)
        new.append(p - lr * m_hat / (np.sqrt(v_hat) + eps_hat))
    return new


def _np_outer_after_step(weights, head, data, step):
    r_u = data["F_u"] @ head[0] + head[1]
    z = _np_log_variance(weights, r_u, data["yhat"])
    return _np_outer(step(head, _np_inner_grad(head, data, z)), data)[0]


def _finite_difference(learner, head, data, step, eps=1e-6):
    weights = [w.numpy() for w in learner.trainable_variables]
    grads = []
    for k, w in enumerate(weights):
        grad = np.zeros_like(w)
        for index in np.ndindex(w.shape):
            values = []
            for sign in (1, -1):
                shifted = [x.copy() for x in weights]
                shifted[k][index] += sign * eps
                values.append(_np_outer_after_step(shifted, head, data, step))
            grad[index] = (values[0] - values[1]) / (2 * eps)
        grads.append(grad)
    return grads


def _assert_grads_close(actual, expected, rtol=1e-6):
    scale = max(np.abs(e).max() for e in expected)
    assert scale > 1e-8, "degenerate problem: hypergradient is ~0"
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), e, rtol=rtol, atol=rtol * scale)


def _real_adam_after_two_steps(head_values, lr=0.05, seed=1, optimizer=None):
    """A Keras Adam with non-zero slots (two real steps) and its variables."""
    rng = np.random.default_rng(seed)
    variables = [keras.Variable(v, dtype="float64") for v in head_values]
    optimizer = optimizer or keras.optimizers.Adam(learning_rate=lr)
    optimizer.build(variables)
    for _ in range(2):
        grads = [rng.normal(size=v.shape) for v in head_values]
        optimizer.apply(grads, variables)
    return optimizer, variables


# ---------- tests ----------


def test_sgd_hypergradient_matches_finite_differences():
    data, head = _problem()
    learner = _learner()
    alpha = 0.3
    actual = _hypergradient(learner, head, data, learning_rate=alpha)

    def sgd(p, g):
        return [x - alpha * dx for x, dx in zip(p, g, strict=True)]

    _assert_grads_close(actual, _finite_difference(learner, head, data, sgd))


def test_sgd_hypergradient_is_gradient_alignment():
    """Theorem 1: -alpha * d/dphi <grad_W L_inner(W, phi), sg(grad_W' L_outer(W'))>."""
    data, head = _problem(seed=2)
    learner = _learner()
    alpha = 0.3
    actual = _hypergradient(learner, head, data, learning_rate=alpha)

    r_u = data["F_u"] @ head[0] + head[1]
    z_now = learner((r_u, data["yhat"])).numpy()
    inner_now = _np_inner_grad(head, data, z_now)
    new_head = [p - alpha * g for p, g in zip(head, inner_now, strict=True)]
    _, outer_grad = _np_outer(new_head, data)  # constants: stop-gradient
    with tf.GradientTape() as tape:
        z = learner((r_u, data["yhat"]))
        e_l = data["y_l"] - data["F_l"] @ head[0] - head[1]
        e_u = (data["yhat"] - r_u) * tf.exp(-z)
        g_kernel = (
            -2 * data["F_l"].T @ e_l / N - LAM * 2 * tf.transpose(data["F_u"]) @ e_u / N
        )
        g_bias = -2 * e_l.sum(0) / N - LAM * 2 * tf.reduce_sum(e_u, 0) / N
        alignment = tf.reduce_sum(g_kernel * outer_grad[0]) + tf.reduce_sum(
            g_bias * outer_grad[1]
        )
    expected = [-alpha * g.numpy() for g in tape.gradient(alignment, learner.weights)]
    _assert_grads_close(actual, expected, rtol=1e-9)


def test_adam_step_matches_keras_adam():
    _, head = _problem()
    optimizer, variables = _real_adam_after_two_steps(head)
    state = read_adam_state(optimizer, variables)
    assert int(state.iterations) == 2
    assert all(np.all(np.asarray(v) > 0) for v in state.velocities)
    grads = [np.random.default_rng(5).normal(size=v.shape) for v in head]
    grads[0][1, 0] = 0.0  # an exactly-zero gradient entry
    current = [v.numpy() for v in variables]
    expected = adam_step(
        variables, grads, *state[:3], optimizer.learning_rate, *state[3:]
    )
    optimizer.apply(grads, variables)
    for e, v in zip(expected, variables, strict=True):
        np.testing.assert_allclose(e.numpy(), v.numpy(), rtol=1e-13, atol=1e-15)
    independent = _np_adam(current, grads, state, lr=0.05)
    for e, i in zip(expected, independent, strict=True):
        np.testing.assert_allclose(e.numpy(), i, rtol=1e-12)


def _decaying_adam_l2(lr=0.05, l2=0.3):
    """AdamL2 with a staircase decay x0.5 per step (the trainer's step decay)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=1, decay_rate=0.5, staircase=True
    )
    return AdamL2(schedule, l2=l2)


def test_adam_step_matches_adam_l2_with_a_schedule():
    """Coupled L2 and a decayed learning rate: the unrolled step is the step
    the real optimizer takes next, and a numpy Adam on g + l2 * p."""
    _, head = _problem()
    optimizer, variables = _real_adam_after_two_steps(
        head, optimizer=_decaying_adam_l2()
    )
    state = read_adam_state(optimizer, variables)
    assert state.l2 == 0.3 and int(state.iterations) == 2
    rate = optimizer.learning_rate  # the schedule's value at iteration 2
    assert float(rate) == pytest.approx(0.05 / 4, rel=1e-7)
    grads = [np.random.default_rng(6).normal(size=v.shape) for v in head]
    current = [v.numpy() for v in variables]
    expected = adam_step(variables, grads, *state[:3], rate, *state[3:])
    without_l2 = adam_step(variables, grads, *state[:3], rate, *state[3:-1])
    optimizer.apply(grads, variables)
    for e, v in zip(expected, variables, strict=True):
        np.testing.assert_allclose(e.numpy(), v.numpy(), rtol=1e-13, atol=1e-15)
    independent = _np_adam(current, grads, state, lr=float(rate))
    for e, i in zip(expected, independent, strict=True):
        np.testing.assert_allclose(e.numpy(), i, rtol=1e-12)
    assert not np.allclose(without_l2[0].numpy(), expected[0].numpy(), rtol=1e-6)


def test_adam_l2_hypergradient_matches_finite_differences():
    data, head = _problem(seed=4)
    learner = _learner()
    optimizer, variables = _real_adam_after_two_steps(
        head, optimizer=_decaying_adam_l2(l2=0.5)
    )
    state = read_adam_state(optimizer, variables)
    rate = float(optimizer.learning_rate)
    actual = _hypergradient(
        learner,
        variables,
        data,
        method="adam",
        adam_state=state,
        learning_rate=optimizer.learning_rate,
    )
    head_now = [v.numpy() for v in variables]

    def adam(p, g):
        return _np_adam(p, g, state, lr=rate)

    _assert_grads_close(actual, _finite_difference(learner, head_now, data, adam))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_adam_step_is_nan_free_at_zero_gradient(jit_compile):
    """Fresh slots and g = 0: d sqrt(v)/dv is infinite, the step's derivative is not.

    With zero slots the step is -lr sqrt(1-b2) g / (sqrt(1-b2)|g| + eps), whose
    derivative at g = 0 is -lr sqrt(1-b2) / eps. The betas are exact in
    float32, so the reference needs no float32 emulation. (A plain `tf.sqrt`
    gives NaN here under XLA.)
    """
    lr, eps, beta_1, beta_2 = 0.01, 1e-7, 0.5, 0.75

    @tf.function(jit_compile=jit_compile)
    def derivative(g):
        zeros = tf.zeros_like(g)
        with tf.GradientTape() as tape:
            tape.watch(g)
            new = adam_step([zeros], [g], [zeros], [zeros], 0, lr, beta_1, beta_2, eps)
        return tape.gradient(new[0], g)

    d_g = derivative(tf.constant([0.0, 0.0, 2.0], "float64")).numpy()
    assert np.all(np.isfinite(d_g))
    at_zero = -lr * np.sqrt(1 - beta_2) / eps
    at_two = -lr * np.sqrt(1 - beta_2) * eps / (np.sqrt(1 - beta_2) * 2 + eps) ** 2
    np.testing.assert_allclose(d_g, [at_zero, at_zero, at_two], rtol=1e-9)


def test_adam_step_is_nan_free_when_velocity_underflows():
    """float32 g = 1e-30: g^2 = 0, so v = 0 while m != 0 (plain sqrt: -inf/NaN)."""
    g = tf.constant([1e-30, 0.0], "float32")
    momentum = tf.constant([0.0, 1e-3], "float32")
    zeros = tf.zeros_like(g)
    with tf.GradientTape() as tape:
        tape.watch(g)
        new = adam_step([zeros], [g], [momentum], [zeros], 0, 1e-3)
    assert np.all(np.isfinite(tape.gradient(new[0], g).numpy()))


def test_adam_hypergradient_matches_finite_differences():
    data, head = _problem(seed=3)
    learner = _learner()
    optimizer, variables = _real_adam_after_two_steps(head)
    state = read_adam_state(optimizer, variables)
    actual = _hypergradient(
        learner,
        variables,
        data,
        method="adam",
        adam_state=state,
        learning_rate=optimizer.learning_rate,
    )
    head_now = [v.numpy() for v in variables]

    def adam(p, g):
        return _np_adam(p, g, state, lr=0.05)

    _assert_grads_close(actual, _finite_difference(learner, head_now, data, adam))


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_unroll_does_not_modify_head_or_optimizer(method):
    data, head = _problem()
    learner = _learner()
    optimizer, variables = _real_adam_after_two_steps(head)
    before = [v.numpy().copy() for v in variables + optimizer.variables]
    state = read_adam_state(optimizer, variables)
    with tf.GradientTape() as outer:
        new_head, grads = unroll_head(
            variables,
            _inner_loss(learner, data),
            method=method,
            adam_state=state,
            learning_rate=0.5,
        )
        outer_loss = tf.reduce_sum(dense_apply(data["F_h"], new_head))
    assert all(g is not None for g in outer.gradient(outer_loss, learner.weights))
    after = [v.numpy() for v in variables + optimizer.variables]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b, a)
    assert not np.allclose(new_head[0].numpy(), before[0])
    assert grads[0].shape == (D, 1) and grads[1].shape == (1,)


def test_invalid_method_and_unsupported_optimizer():
    with pytest.raises(ValueError, match="sgd.*adam"):
        unroll_head([tf.ones((1,))], tf.reduce_sum, method="lbfgs", learning_rate=1)
    variables = [keras.Variable(np.ones((2, 1)))]
    optimizer = keras.optimizers.Adam(clipnorm=1.0, amsgrad=True)
    optimizer.build(variables)
    with pytest.raises(ValueError, match="amsgrad.*clipnorm"):
        read_adam_state(optimizer, variables)
    optimizer = keras.optimizers.AdamW()
    optimizer.build(variables)
    with pytest.raises(ValueError, match="Adam or keras_ssr AdamL2"):
        read_adam_state(optimizer, variables)


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_mirrored_all_reduce_matches_one_device(method, two_device_strategy):
    """Per-replica half batches + MEAN all-reduce == one device, full batch.

    For Adam the state is read, in each replica, from a real Keras Adam built
    under the strategy (mirrored slots), and the one-device reference uses the
    same state read in cross-replica context.
    """
    data, head = _problem(seed=4)
    strategy = two_device_strategy
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        learner = _learner()
        mirrored_head = [keras.Variable(v, dtype="float64") for v in head]
        optimizer = keras.optimizers.Adam(learning_rate=0.05)
        optimizer.build(mirrored_head)

    def apply_real_step(grads):
        # Gradients are made inside the replica fn: passing one tensor to both
        # replicas fails in Keras' all-reduce ("destinations can not be empty").
        def replica_fn():
            optimizer.apply([tf.constant(g) for g in grads], mirrored_head)

        tf.function(lambda: strategy.run(replica_fn))()

    rng = np.random.default_rng(7)
    for _ in range(2):
        apply_real_step([rng.normal(size=v.shape) for v in head])
    head_now = [v.numpy() for v in mirrored_head]

    def unroll_kwargs():
        if method == "sgd":
            return dict(method="sgd", learning_rate=0.5)
        state = read_adam_state(optimizer, mirrored_head)
        return dict(method="adam", learning_rate=0.05, adam_state=state)

    assert method == "sgd" or int(unroll_kwargs()["adam_state"].iterations) == 2
    expected = [
        g.numpy() for g in _hypergradient(learner, head_now, data, **unroll_kwargs())
    ]
    halves = strategy.experimental_distribute_values_from_function(
        lambda context: {
            key: tf.constant(value[context.replica_id_in_sync_group :: 2])
            for key, value in data.items()
        }
    )

    def mean_hypergradient(all_reduce):
        def replica_fn(batch):
            return _hypergradient(
                learner, mirrored_head, batch, all_reduce=all_reduce, **unroll_kwargs()
            )

        per_replica = tf.function(lambda b: strategy.run(replica_fn, (b,)))(halves)
        return [
            strategy.reduce(tf.distribute.ReduceOp.MEAN, g, axis=None).numpy()
            for g in per_replica
        ]

    _assert_grads_close(mean_hypergradient(all_reduce=True), expected, rtol=1e-5)
    unreduced = mean_hypergradient(all_reduce=False)
    difference = max(
        np.abs(u - e).max() for u, e in zip(unreduced, expected, strict=True)
    )
    assert difference > 1e-3 * max(np.abs(e).max() for e in expected)
