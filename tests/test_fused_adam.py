"""FusedAdam against keras.optimizers.Adam and a NumPy closed form.

The fused kernel computes `1 - beta_2` in float32 where Keras multiplies by the
Python float `1 - beta_2`: the second moments differ by ~1.3e-5 relative, the
updates by ~1e-5 of their size; updates are compared at rtol 1e-4.
"""

import keras
import numpy as np
import pytest

from keras_ssr.optimizers.fused_adam import FusedAdam


def numpy_adam(p, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Keras' Adam rule (epsilon hat) in float64."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p = p - alpha * m / (np.sqrt(v) + epsilon)
    return p, m, v


def trajectory(optimizer, steps=4, dtype="float32"):
    rng = np.random.default_rng(0)
    variables = [
        keras.Variable(rng.normal(size=(5, 3)).astype(dtype)),
        keras.Variable(rng.normal(size=(3,)).astype(dtype)),
    ]
    optimizer.build(variables)
    grads = [
        [rng.normal(size=v.shape).astype(dtype) for v in variables]
        for _ in range(steps)
    ]
    initial = [v.numpy().astype("float64") for v in variables]
    for step_grads in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
    return variables, initial, grads


def test_matches_keras_adam_and_its_state():
    keras_optimizer = keras.optimizers.Adam(0.01)
    fused_optimizer = FusedAdam(0.01)
    reference, initial, _ = trajectory(keras_optimizer)
    got, _, _ = trajectory(fused_optimizer)
    for e, g, p in zip(reference, got, initial, strict=True):
        np.testing.assert_allclose(g.numpy() - p, e.numpy() - p, rtol=1e-4)
    for e, g in zip(keras_optimizer.variables, fused_optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-4)
    assert int(fused_optimizer.iterations.numpy()) == 4


def test_matches_the_float64_closed_form():
    optimizer = FusedAdam(0.01)
    variables, initial, grads = trajectory(optimizer)
    for i, variable in enumerate(variables):
        p, m, v = numpy_adam(
            initial[i], [g[i].astype("float64") for g in grads], lr=0.01
        )
        np.testing.assert_allclose(
            variable.numpy() - initial[i], p - initial[i], rtol=1e-4
        )
        index = optimizer._get_variable_index(variable)
        np.testing.assert_allclose(optimizer._momentums[index].numpy(), m, rtol=1e-5)
        np.testing.assert_allclose(optimizer._velocities[index].numpy(), v, rtol=1e-4)


def test_amsgrad_and_float64_use_the_keras_update(float64):
    for kwargs, dtype in (({"amsgrad": True}, "float32"), ({}, "float64")):
        expected, _, _ = trajectory(keras.optimizers.Adam(0.01, **kwargs), 4, dtype)
        got, _, _ = trajectory(FusedAdam(0.01, **kwargs), 4, dtype)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_array_equal(g.numpy(), e.numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
def test_trains_a_compiled_model_like_keras_adam(jit_compile):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x @ rng.normal(size=(4, 1)).astype("float32")
    weights = []
    for optimizer in (keras.optimizers.Adam(0.05), FusedAdam(0.05)):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for e, g in zip(*weights, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_config_round_trip():
    optimizer = FusedAdam(learning_rate=0.002, beta_1=0.8)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(optimizer)
    )
    assert isinstance(restored, FusedAdam)
    assert restored.get_config() == optimizer.get_config()


def test_mirrored_strategy_matches_keras_adam(two_device_strategy):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = x @ rng.normal(size=(4, 1)).astype("float32")
    weights = []
    for optimizer_class in (keras.optimizers.Adam, FusedAdam):
        keras.utils.set_random_seed(0)
        with two_device_strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile(optimizer=optimizer_class(0.05), loss="mse")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for e, g in zip(*weights, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
