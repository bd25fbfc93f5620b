"""Hashed dropout: uniform, independent per seed and stream, the same under XLA
and on every replica (the global batch's mask, sliced)."""

import numpy as np
import tensorflow as tf

from keras_ssr.methods.hashed_dropout import global_batch_dropout, hashed_uniform


def test_hashed_uniform_is_uniform_independent_and_the_same_under_xla():
    seed = tf.constant([3, 5], tf.int64)
    draw = tf.function(lambda stream: hashed_uniform([200, 500], seed, stream))
    u = draw(0).numpy()
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert np.all(np.abs(np.histogram(u, bins=10)[0] / u.size - 0.1) < 0.005)
    for other in (draw(1).numpy(), hashed_uniform([200, 500], [3, 6]).numpy()):
        assert abs(np.corrcoef(u.ravel(), other.ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(u.ravel()[:-1], u.ravel()[1:])[0, 1]) < 0.01
    jit = tf.function(lambda: hashed_uniform([200, 500], seed, 0), jit_compile=True)
    np.testing.assert_array_equal(jit().numpy(), u)
    np.testing.assert_array_equal(hashed_uniform([200, 500], seed, 0).numpy(), u)


def test_global_batch_dropout_on_two_replicas_equals_one_device(two_device_strategy):
    x = tf.reshape(tf.range(1, 8 * 3 * 2 + 1, dtype=tf.float32), (3, 8, 2))
    seed = tf.constant([7, 1], tf.int64)
    one = global_batch_dropout(x, 0.3, seed, stream=2, axis=1).numpy()
    kept = one != 0
    np.testing.assert_allclose(one[kept], x.numpy()[kept] / 0.7, rtol=1e-6)
    assert 0.5 < kept.mean() < 0.9

    def step(rows):
        return global_batch_dropout(rows, 0.3, seed, stream=2, axis=1)

    halves = two_device_strategy.experimental_distribute_values_from_function(
        lambda context: x[:, 4 * context.replica_id_in_sync_group :][:, :4]
    )
    out = two_device_strategy.run(step, args=(halves,))
    parts = two_device_strategy.experimental_local_results(out)
    np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts], 1), one)
