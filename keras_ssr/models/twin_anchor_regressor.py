"""`TwinAnchorRegressor`: a twin network's prediction from baked labeled anchors."""

import keras

from keras_ssr.models.pair_head import anchor_ensemble


@keras.saving.register_keras_serializable(package="keras_ssr")
class TwinAnchorRegressor(keras.Model):
    """Raw inputs in, TNNR's anchor-averaged prediction out (TNNR's export).

    `call` computes the backbone features h(x) and returns, de-standardised,
    the mean over the anchors k of `F(h(x), h_k)/2 - F(h_k, h(x))/2 + y_k`
    (`anchor_ensemble`). The anchors' features h_k and standardised targets
    y_k are weights, filled by `from_anchors` with features computed with the
    final network weights.

    Args:
        regressor: the `SSRRegressor` whose `features` are the twin's features.
        head: the `PairHead` F.
        num_anchors: number of anchor rows.
        feature_dim: dimension of the backbone features.
        **kwargs: standard `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.pair_head import PairHead
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> regressor = SSRRegressor(MLPBackbone((4,)))
    >>> regressor.build((None, 3))
    >>> head = PairHead(units=8)
    >>> head.build((None, 4))
    >>> anchors = regressor.features(np.ones((5, 3), "float32"))
    >>> model = TwinAnchorRegressor.from_anchors(regressor, head, anchors, np.ones(5))
    >>> model(np.ones((2, 3), "float32")).shape
    TensorShape([2, 1])

    References:
        Wetzel, Melko & Tamblyn, Twin neural network regression is a
        semi-supervised regression algorithm, Mach. Learn.: Sci. Technol. 2022.
    """

    def __init__(self, regressor, head, num_anchors, feature_dim, **kwargs):
        super().__init__(**kwargs)
        self.regressor = regressor
        self.head = head
        self.num_anchors = int(num_anchors)
        self.feature_dim = int(feature_dim)
        self.anchor_features = self.add_weight(
            name="anchor_features",
            shape=(self.num_anchors, self.feature_dim),
            initializer="zeros",
            trainable=False,
        )
        self.anchor_targets = self.add_weight(
            name="anchor_targets",
            shape=(self.num_anchors,),
            initializer="zeros",
            trainable=False,
        )

    @classmethod
    def from_anchors(cls, regressor, head, anchor_features, anchor_targets, **kwargs):
        """The model averaging over the given anchors' features and targets."""
        num_anchors, feature_dim = anchor_features.shape
        model = cls(regressor, head, num_anchors, feature_dim, **kwargs)
        model.anchor_features.assign(anchor_features)
        model.anchor_targets.assign(keras.ops.reshape(anchor_targets, (-1,)))
        model.built = True
        return model

    def build(self, input_shape):
        self.built = True

    @property
    def input_dtype(self):
        """The regressor's input dtype (for the default serving signature)."""
        return self.regressor.input_dtype

    def call(self, inputs, training=False):
        features = self.regressor.features(inputs, training=False)
        prediction = anchor_ensemble(
            self.head, features, self.anchor_features, self.anchor_targets
        )
        return self.regressor.destandardize(prediction)

    def get_config(self):
        config = super().get_config()
        config.update(
            regressor=keras.saving.serialize_keras_object(self.regressor),
            head=keras.saving.serialize_keras_object(self.head),
            num_anchors=self.num_anchors,
            feature_dim=self.feature_dim,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("regressor", "head"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
