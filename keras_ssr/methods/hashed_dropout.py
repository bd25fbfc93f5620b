"""Dropout whose masks are the same on one device, on replicas and under XLA.

Keras' and TensorFlow's random ops do not serve methods that sample dropout
inside their loss (SimRegMatch's MC passes, UCVME's variational ensembles):
under `MirroredStrategy` each replica draws its own numbers for its share of
the batch, and `tf.random.stateless_uniform` (and `stateless_fold_in`) draw
other numbers under XLA than on the CPU kernel, so a method's 2-replica and
jit-compiled steps would differ from one device's. Here the uniform numbers
are a counter-based hash of a seed, a stream number and each element's index
in the *global* batch; every replica draws the global mask and keeps its own
rows.
"""

import tensorflow as tf

from keras_ssr.methods.replica_gather import replica_context

_GOLDEN = 0x9E3779B9
_STREAM = 0x632BE5AB


def hashed_uniform(shape, seed, stream=0):
    """Uniform numbers in [0, 1) (24 bits) from a counter-based hash.

    Entry k is MurmurHash3's 32-bit finaliser of `key + (k + 1) * golden`,
    `key` a hash of the two seed integers and `stream` (all modulo 2^32). The
    same numbers in graph mode, under `jit_compile=True` and on every device.

    Args:
        shape: the output shape (a 1-D int tensor or a list).
        seed: two integers (a `(2,)` tensor, e.g. a `keras.random.SeedGenerator`
            draw or `(seed, step)`).
        stream: an integer naming an independent sequence for the same seed.

    Example:

    >>> u = hashed_uniform([3, 4], tf.constant([1, 2]), stream=5)
    >>> bool(tf.reduce_all((u >= 0) & (u < 1)))
    True
    """
    seed = tf.cast(tf.cast(seed, tf.int64), tf.uint32)
    golden = tf.constant(_GOLDEN, tf.uint32)
    stream = tf.cast(tf.cast(stream, tf.int64), tf.uint32)
    key = _fmix32(seed[0] * golden + _fmix32(seed[1] + stream * _STREAM))
    size = tf.reduce_prod(shape)
    counter = tf.cast(tf.range(1, size + 1), tf.uint32)
    bits = tf.bitwise.right_shift(
        _fmix32(key + counter * golden), tf.constant(8, tf.uint32)
    )
    return tf.reshape(tf.cast(bits, tf.float32) / 2.0**24, shape)


def global_batch_dropout(x, rate, seed, stream=0, axis=0):
    """Inverted dropout of `x` with a mask drawn for the global batch.

    Under `tf.distribute` replica r holds rows `r*n ... (r+1)*n - 1` of the
    global batch along `axis`; the mask is drawn for the global batch
    (`hashed_uniform`) and sliced, so every row gets the mask it gets on one
    device.

    Args:
        x: the tensor to drop out (static shape except perhaps `axis`).
        rate: the drop probability, in [0, 1).
        seed, stream: see `hashed_uniform`.
        axis: the batch axis of `x`.

    Example:

    >>> y = global_batch_dropout(tf.ones((4, 3)), 0.5, tf.constant([0, 1]))
    >>> sorted(set(y.numpy().ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    """
    if rate == 0.0:
        return x
    axis = axis % len(x.shape)
    shape = [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape)]
    context = replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    global_shape = list(shape)
    global_shape[axis] = shape[axis] * replicas
    uniform = hashed_uniform(tf.stack(global_shape), seed, stream)
    if context is not None:
        offset = shape[axis] * context.replica_id_in_sync_group
        begin = [offset if i == axis else 0 for i in range(len(shape))]
        uniform = tf.slice(uniform, tf.stack(begin), tf.stack(shape))
    keep = uniform >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


def _fmix32(h):
    """MurmurHash3's finaliser (wrap-around uint32 arithmetic)."""
    for shift, factor in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = tf.bitwise.bitwise_xor(
            h, tf.bitwise.right_shift(h, tf.constant(shift, tf.uint32))
        )
        h = h * tf.constant(factor, tf.uint32)
    return tf.bitwise.bitwise_xor(
        h, tf.bitwise.right_shift(h, tf.constant(16, tf.uint32))
    )
