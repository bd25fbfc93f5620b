"""`PairHead`: a twin network's head F(a, b) on the features of two inputs."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssr")
class PairHead(keras.layers.Layer):
    """F(h_a, h_b) = w^T relu(W [h_a; h_b] + c) + d: an MLP on a concatenated pair.

    The head of a twin network: both inputs go through the same backbone and
    the head reads the concatenation of their features. `call` takes aligned
    pairs; `pairwise` gives every pair of two sets at once, splitting W into
    the blocks acting on h_a and on h_b (`W [h_a; h_b] = W_a h_a + W_b h_b`), so
    the first layer costs one product per row instead of one per pair. The
    activation is a ReLU (the reference code's), which `anchor_ensemble`'s
    exact average over many anchors relies on.

    Args:
        units: width of the hidden layer.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> head = PairHead(units=8)
    >>> head.build((None, 4))
    >>> head.pairwise(keras.ops.ones((3, 4)), keras.ops.ones((5, 4))).shape
    TensorShape([3, 5])

    References:
        Wetzel, Ryczko, Melko & Tamblyn, Twin neural network regression,
        Applied AI Letters 2022.
    """

    def __init__(self, units=128, **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be >= 1, got {units}.")
        self.units = int(units)
        self.hidden = keras.layers.Dense(self.units, name="hidden")
        self.output_layer = keras.layers.Dense(1, name="output")

    def build(self, feature_shape):
        self.feature_dim = int(feature_shape[-1])
        self.hidden.build((None, 2 * self.feature_dim))
        self.output_layer.build((None, self.units))
        self.built = True

    def call(self, inputs):
        """F of aligned pairs `(h_a, h_b)` (rows i with i), shape (batch,)."""
        h_a, h_b = inputs
        hidden = self.hidden(keras.ops.concatenate([h_a, h_b], axis=-1))
        return self._out(hidden)

    def pairwise(self, h_a, h_b):
        """The matrix `F(h_a[i], h_b[j])`, shape (len(h_a), len(h_b))."""
        d = self.feature_dim
        kernel, bias = self.hidden.kernel, self.hidden.bias
        left = keras.ops.matmul(h_a, kernel[:d])
        right = keras.ops.matmul(h_b, kernel[d:]) + bias
        return self._out(left[:, None, :] + right[None, :, :])

    def _out(self, hidden):
        return keras.ops.squeeze(self.output_layer(keras.ops.relu(hidden)), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config


def anchor_ensemble(head, features, anchor_features, anchor_targets):
    """TNNR's prediction: the mean over anchors k of
    `F(x, x_k)/2 - F(x_k, x)/2 + y_k`, shape (batch, 1), computed exactly
    without forming the (batch, anchors, units) pair activations.

    With `F(a, b) = w^T relu(U a + V b + c) + d` (U, V the blocks of the hidden
    kernel acting on a and on b), the output bias d cancels and
    `mean_k F(x, x_k) = w^T mean_k relu(U x + (V x_k + c)) + d`: per hidden
    unit a sum over anchors of `relu(q + b_k)` (`relu_sums`), likewise for
    `F(x_k, x)` with `q = V x`, `b_k = U x_k + c`.

    Args:
        head: the `PairHead`.
        features: backbone features of the inputs, (batch, d).
        anchor_features: backbone features of the anchors, (n, d).
        anchor_targets: the anchors' targets, (n,).
    """
    d = head.feature_dim
    kernel, bias = head.hidden.kernel, head.hidden.bias
    forward = relu_sums(
        keras.ops.matmul(features, kernel[:d]),
        keras.ops.matmul(anchor_features, kernel[d:]) + bias,
    )
    backward = relu_sums(
        keras.ops.matmul(features, kernel[d:]),
        keras.ops.matmul(anchor_features, kernel[:d]) + bias,
    )
    n = keras.ops.cast(keras.ops.shape(anchor_features)[0], forward.dtype)
    hidden = (forward - backward) / (2.0 * n)
    mean_target = keras.ops.mean(keras.ops.cast(anchor_targets, features.dtype))
    return keras.ops.matmul(hidden, head.output_layer.kernel) + mean_target


def relu_sums(queries, anchor_terms):
    """`S[i, h] = sum_k relu(queries[i, h] + anchor_terms[k, h])`, exactly.

    Per column h, with the anchor terms sorted, the terms with
    `b_k > -q` are a suffix: `S = q * (their count) + (their sum)`, from one
    binary search and a suffix sum, O((n + batch) log n) instead of
    O(n * batch). Computed in float64 (the two parts may cancel); returned in
    the queries' dtype.

    Args:
        queries: (batch, units).
        anchor_terms: (n, units).
    """
    q = tf.transpose(tf.cast(queries, "float64"))
    terms = tf.sort(tf.transpose(tf.cast(anchor_terms, "float64")), axis=1)
    suffix = tf.concat(
        [tf.cumsum(terms, axis=1, reverse=True), tf.zeros_like(terms[:, :1])], axis=1
    )
    first = tf.searchsorted(terms, -q, side="right")  # first k with b_k > -q
    count = tf.cast(tf.shape(terms)[1] - first, "float64")
    sums = q * count + tf.gather(suffix, first, batch_dims=1)
    return tf.cast(tf.transpose(sums), queries.dtype)
