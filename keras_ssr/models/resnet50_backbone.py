"""`ResNet50Backbone`: keras.applications ResNet-50 with its preprocessing inside."""

import pathlib
import warnings

import keras

from keras_ssr.layers.fused_batch_normalization import FusedBatchNormalization

# keras.applications.resnet50.preprocess_input ("caffe" mode): RGB -> BGR, then
# subtract the ImageNet channel means (BGR order), no scaling.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="keras_ssr")
class ResNet50Backbone(keras.layers.Layer):
    """ResNet-50 (no top, global average pooling): pixels in [0, 255] -> 2048 features.

    Wraps `keras.applications.ResNet50(include_top=False, weights=None,
    pooling="avg")`; ResNet-50's own preprocessing (RGB -> BGR, minus the
    ImageNet means) runs inside `call`, so inputs are raw RGB pixels in
    [0, 255] (uint8 or float), and grayscale inputs (1 channel) are repeated
    to 3 channels. Nothing is ever downloaded: ImageNet weights are loaded from
    a local file when `weights_path` is given (the file Keras itself
    downloads, `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`, or a
    `.weights.h5` saved from this backbone's `resnet`); without it the network
    starts from a random initialisation and a warning says so.

    Args:
        weights_path: local weights file of ResNet-50 without its top, or
            None for a random initialisation.
        warn_random_init: whether to warn when `weights_path` is None (off
            when a saved model is reloaded: its weights come from the file).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> backbone = ResNet50Backbone(warn_random_init=False)
    >>> tuple(backbone(keras.ops.zeros((1, 32, 32, 3))).shape)
    (1, 2048)

    References:
        - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(
        self, weights_path=None, warn_random_init=True, fused_batch_norm=True, **kwargs
    ):
        super().__init__(**kwargs)
        self.weights_path = None if weights_path is None else str(weights_path)
        self.warn_random_init = bool(warn_random_init)
        self.fused_batch_norm = bool(fused_batch_norm)
        if self.weights_path is not None:
            _check_file(self.weights_path)
        resnet = keras.applications.ResNet50(
            include_top=False, weights=None, pooling="avg", input_shape=(None, None, 3)
        )
        # Assigned once: Keras tracks every layer ever set as an attribute.
        self.resnet = (
            _with_fused_batch_norm(resnet) if self.fused_batch_norm else resnet
        )
        if self.weights_path is not None:
            self.resnet.load_weights(self.weights_path)
        elif self.warn_random_init:
            warnings.warn(
                "ResNet50Backbone: no weights_path given, so ResNet-50 starts "
                "from a RANDOM initialisation (nothing is downloaded). For "
                "ImageNet weights pass weights_path= to a local copy of "
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5.",
                stacklevel=2,
            )

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=False):
        x = keras.ops.cast(inputs, self.compute_dtype)
        if x.shape[-1] == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        x = x[..., ::-1] - keras.ops.convert_to_tensor(
            _IMAGENET_BGR_MEAN, dtype=self.compute_dtype
        )
        return self.resnet(x, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2048)

    def get_config(self):
        config = super().get_config()
        config.update(
            weights_path=self.weights_path,
            warn_random_init=self.warn_random_init,
            fused_batch_norm=self.fused_batch_norm,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # A saved model carries its weights: never re-read the original file.
        # Models saved before `fused_batch_norm` existed hold Keras'
        # BatchNormalization layers (their weights are stored under that
        # class name): rebuild them so.
        config = dict(config, weights_path=None, warn_random_init=False)
        config.setdefault("fused_batch_norm", False)
        return cls(**config)


def _with_fused_batch_norm(resnet):
    """`resnet` with every BatchNormalization a `FusedBatchNormalization`.

    Same graph, layer names, arguments and initial weights (copied), so
    weight files of `keras.applications.ResNet50` load unchanged.
    """

    def clone(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return FusedBatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    fused = keras.models.clone_model(resnet, clone_function=clone)
    fused.set_weights(resnet.get_weights())
    return fused


def _check_file(path):
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(
            f"ResNet50Backbone: weights file {path} not found. Give a local "
            "ResNet-50 no-top weights file (e.g. Keras' "
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, from "
            "~/.keras/models/ on a machine that has downloaded it) or "
            "weights_path=None for a random initialisation."
        )
