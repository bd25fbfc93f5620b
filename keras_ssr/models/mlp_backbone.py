"""`MLPBackbone`: a multilayer perceptron feature extractor for tabular data."""

import keras


@keras.saving.register_keras_serializable(package="keras_ssr")
class MLPBackbone(keras.layers.Layer):
    """Stack of Dense layers that maps features to a representation.

    The regression head is not part of the backbone: HPL and L2I unroll the
    head alone, over stop-gradient backbone features.

    Args:
        hidden_units: widths of the hidden Dense layers.
        activation: activation of every hidden layer.
        dropout: dropout rate after every hidden layer (0 disables it).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> backbone = MLPBackbone(hidden_units=(32, 16))
    >>> backbone(keras.ops.ones((4, 8))).shape
    (4, 16)
    """

    def __init__(
        self, hidden_units=(256, 128), activation="relu", dropout=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = activation
        self.dropout = float(dropout)
        self.dense_layers = [
            keras.layers.Dense(units, activation=activation, name=f"dense_{i}")
            for i, units in enumerate(self.hidden_units)
        ]
        self.dropout_layers = [
            keras.layers.Dropout(self.dropout, name=f"dropout_{i}")
            for i in range(len(self.hidden_units))
            if self.dropout > 0
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=False):
        x = inputs
        for i, layer in enumerate(self.dense_layers):
            x = layer(x)
            if self.dropout_layers:
                x = self.dropout_layers[i](x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_units[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_units=list(self.hidden_units),
            activation=self.activation,
            dropout=self.dropout,
        )
        return config
