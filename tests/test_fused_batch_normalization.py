"""FusedBatchNormalization against Keras' layer and a NumPy closed form."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ssr.layers.fused_batch_normalization import FusedBatchNormalization

SHAPE = (4, 5, 6, 3)


def numpy_batch_norm(x, gamma, beta, epsilon):
    """Ioffe & Szegedy Algorithm 1 in float64: y, batch mean, biased variance."""
    mean = x.mean(axis=(0, 1, 2))
    variance = x.var(axis=(0, 1, 2))
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta, mean, variance


def numpy_batch_norm_grads(x, gamma, epsilon, upstream):
    """d(sum(y * upstream)) / d(x, gamma, beta) of training-mode batch norm."""
    n = x.shape[0] * x.shape[1] * x.shape[2]
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    inv = 1.0 / np.sqrt(variance + epsilon)
    x_hat = (x - mean) * inv
    d_beta = upstream.sum(axis=(0, 1, 2))
    d_gamma = (upstream * x_hat).sum(axis=(0, 1, 2))
    d_x = gamma * inv / n * (n * upstream - d_beta - x_hat * d_gamma)
    return d_x, d_gamma, d_beta


def pair(**kwargs):
    """A Keras and a fused layer with the same random gamma/beta/moving stats."""
    rng = np.random.default_rng(0)
    layers = (
        keras.layers.BatchNormalization(**kwargs),
        FusedBatchNormalization(**kwargs),
    )
    for layer in layers:
        layer.build(SHAPE)
    values = [rng.uniform(0.5, 2.0, size=w.shape) for w in layers[0].weights]
    for layer in layers:
        layer.set_weights(values)
    return layers


def inputs(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, SHAPE)
    return x, rng.normal(size=SHAPE)


def forward_backward(layer, x, upstream, training):
    """`[y, dx, dgamma, dbeta]` of `sum(layer(x) * upstream)`, as tensors."""
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.constant(upstream, tf.float32))
    return [y] + tape.gradient(loss, [x] + list(layer.trainable_weights))


def run(layer, x, upstream, training):
    return [t.numpy() for t in forward_backward(layer, x, upstream, training)]


@pytest.mark.parametrize("training", [True, False])
def test_matches_keras_layer_outputs_gradients_and_moving_statistics(training):
    keras_layer, fused = pair(momentum=0.9, epsilon=1e-3)
    x, upstream = inputs()
    for _ in range(2):  # two updates of the moving statistics
        expected = run(keras_layer, x, upstream, training)
        got = run(fused, x, upstream, training)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-5)
    for e, g in zip(keras_layer.weights, fused.weights, strict=True):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-6, atol=1e-6)


def test_training_mode_matches_the_float64_closed_form():
    _, fused = pair(momentum=0.9, epsilon=1e-3)
    gamma, beta, moving_mean, moving_variance = (w.numpy() for w in fused.weights)
    x, upstream = inputs()
    y, d_x, d_gamma, d_beta = run(fused, x, upstream, training=True)
    expected_y, mean, variance = numpy_batch_norm(x, gamma, beta, 1e-3)
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
    for got, expected in zip(
        (d_x, d_gamma, d_beta),
        numpy_batch_norm_grads(x, gamma, 1e-3, upstream),
        strict=True,
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Keras' moving update with the biased variance (not the fused kernel's
    # Bessel-corrected one).
    np.testing.assert_allclose(
        fused.moving_mean.numpy(), 0.9 * moving_mean + 0.1 * mean, rtol=1e-6
    )
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), 0.9 * moving_variance + 0.1 * variance, rtol=1e-6
    )


def test_inference_mode_uses_moving_statistics_and_leaves_them():
    _, fused = pair(epsilon=1e-3)
    gamma, beta, moving_mean, moving_variance = (w.numpy() for w in fused.weights)
    x, _ = inputs()
    y = fused(tf.constant(x, tf.float32), training=False).numpy()
    expected = gamma * (x - moving_mean) / np.sqrt(moving_variance + 1e-3) + beta
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), moving_mean)
    # A frozen layer normalises with its moving statistics even in training.
    fused.trainable = False
    frozen = fused(tf.constant(x, tf.float32), training=True).numpy()
    np.testing.assert_allclose(frozen, expected, rtol=1e-5, atol=1e-5)


def test_without_scale_or_center_and_inside_a_tf_function():
    keras_layer, fused = pair(center=False, scale=False)
    x, upstream = inputs()
    expected = run(keras_layer, x, upstream, True)
    graph = tf.function(lambda: forward_backward(fused, x, upstream, True))
    got = [t.numpy() for t in graph()]
    np.testing.assert_allclose(got[0], expected[0], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got[1], expected[1], rtol=2e-5, atol=2e-5)


def test_falls_back_to_keras_for_float64_and_other_ranks(float64):
    for shape, axis in (((4, 5, 6, 3), -1), ((8, 3), -1), ((4, 3, 5, 6), 1)):
        rng = np.random.default_rng(0)
        x = rng.normal(size=shape)
        keras_layer = keras.layers.BatchNormalization(axis=axis)
        fused = FusedBatchNormalization(axis=axis)
        for training in (True, False):
            np.testing.assert_array_equal(
                fused(x, training=training), keras_layer(x, training=training)
            )


def test_config_round_trip_and_serialization():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1.001e-5, name="bn")
    clone = FusedBatchNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(restored, FusedBatchNormalization)
    assert restored.momentum == 0.8
