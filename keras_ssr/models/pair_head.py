"""`PairHead`: a twin network's head F(a, b) on the features of two inputs."""

import keras

# Anchors per block when averaging over many anchors (`anchor_ensemble`): a
# block's hidden activations are (batch, ANCHOR_BLOCK, units) floats.
ANCHOR_BLOCK = 128


@keras.saving.register_keras_serializable(package="keras_ssr")
class PairHead(keras.layers.Layer):
    """F(h_a, h_b) = w^T act(W [h_a; h_b] + c) + d: an MLP on a concatenated pair.

    The head of a twin network: both inputs go through the same backbone and
    the head reads the concatenation of their features. `call` takes aligned
    pairs; `pairwise` gives every pair of two sets at once, splitting W into
    the blocks acting on h_a and on h_b (`W [h_a; h_b] = W_a h_a + W_b h_b`), so
    the first layer costs one product per row instead of one per pair.

    Args:
        units: width of the hidden layer.
        activation: its activation.
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

    def __init__(self, units=128, activation="relu", **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be >= 1, got {units}.")
        self.units = int(units)
        self.activation = activation
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
        hidden = keras.activations.get(self.activation)(hidden)
        return keras.ops.squeeze(self.output_layer(hidden), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=self.activation)
        return config


def anchor_ensemble(head, features, anchor_features, anchor_targets):
    """TNNR's prediction: the mean over anchors k of
    `F(x, x_k)/2 - F(x_k, x)/2 + y_k`, shape (batch, 1).

    The anchors are taken in blocks of `ANCHOR_BLOCK` so the pair activations
    stay (batch, block, units).

    Args:
        head: the `PairHead`.
        features: backbone features of the inputs, (batch, d).
        anchor_features: backbone features of the anchors, (n, d).
        anchor_targets: the anchors' targets, (n,).
    """
    anchor_targets = keras.ops.cast(anchor_targets, features.dtype)
    n = int(anchor_features.shape[0])
    total = 0.0
    for start in range(0, n, ANCHOR_BLOCK):
        block = anchor_features[start : start + ANCHOR_BLOCK]
        forward = head.pairwise(features, block)
        backward = keras.ops.transpose(head.pairwise(block, features))
        targets = anchor_targets[start : start + ANCHOR_BLOCK]
        estimates = 0.5 * forward - 0.5 * backward + targets[None, :]
        total = total + keras.ops.sum(estimates, axis=1)
    return keras.ops.reshape(total / n, (-1, 1))
