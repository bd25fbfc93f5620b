"""`SSRRegressor`: backbone + Dense(1) head, with in-graph input/target scaling."""

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssr")
class SSRRegressor(keras.Model):
    """The deployable regressor: raw features in, target units out.

    `call` standardises raw inputs with the training feature statistics, runs
    the backbone and the Dense(1) `head`, and de-standardises the output with
    the labeled target statistics. Training code works in standardised target
    units through `features` and `standardized`.

    Args:
        backbone: a layer mapping standardised inputs to features.
        input_mean: per-feature mean used to standardise raw inputs (or `None`).
        input_std: per-feature standard deviation (or `None`).
        input_clip: if set, standardised inputs are clipped to
            `[-input_clip, input_clip]`, so a rare extreme raw value (a
            heavy-tailed column) cannot drive the network far outside what it
            was trained on. Part of the graph, hence of the export.
        target_mean: mean of the labeled training targets.
        target_std: standard deviation of the labeled training targets.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> model = SSRRegressor(MLPBackbone((16,)), target_mean=2.0, target_std=0.5)
    >>> model(np.ones((3, 4), "float32")).shape
    (3, 1)
    """

    def __init__(
        self,
        backbone,
        input_mean=None,
        input_std=None,
        input_clip=None,
        target_mean=0.0,
        target_std=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = keras.layers.Dense(1, name="head")
        self.input_mean = None if input_mean is None else _floats(input_mean)
        self.input_std = None if input_std is None else _floats(input_std, floor=True)
        self.input_clip = None if input_clip is None else float(input_clip)
        self.target_mean = float(target_mean)
        self.target_std = float(target_std)

    def build(self, input_shape):
        if not self.backbone.built:  # a deserialized backbone comes built
            self.backbone.build(input_shape)
        self.head.build(self.backbone.compute_output_shape(input_shape))
        self.built = True

    @property
    def input_dtype(self):
        """The backbone's input dtype (e.g. string for a text backbone): used
        for the default SavedModel signature."""
        return self.backbone.input_dtype

    def features(self, x, training=False):
        """Backbone features of raw inputs `x` (strings pass through as-is)."""
        x = tf.convert_to_tensor(x)
        if x.dtype != tf.string:
            x = keras.ops.cast(x, self.compute_dtype)
        if self.input_mean is not None:
            mean = keras.ops.convert_to_tensor(self.input_mean, dtype=x.dtype)
            std = keras.ops.convert_to_tensor(self.input_std, dtype=x.dtype)
            x = (x - mean) / std
        if self.input_clip is not None:
            x = keras.ops.clip(x, -self.input_clip, self.input_clip)
        return self.backbone(x, training=training)

    def standardized(self, x, training=False):
        """Predictions in standardised target units."""
        return self.head(self.features(x, training=training))

    def head_params(self):
        """`[kernel, bias]` of the Dense(1) head (what HPL and L2I unroll)."""
        return [self.head.kernel, self.head.bias]

    def destandardize(self, y_std):
        return y_std * self.target_std + self.target_mean

    def call(self, inputs, training=False):
        return self.destandardize(self.standardized(inputs, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            input_mean=self.input_mean,
            input_std=self.input_std,
            input_clip=self.input_clip,
            target_mean=self.target_mean,
            target_std=self.target_std,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def _floats(values, floor=False):
    values = np.asarray(values, dtype="float64").reshape(-1)
    if floor:
        values = np.where(values > 0, values, 1.0)
    return [float(v) for v in values]
