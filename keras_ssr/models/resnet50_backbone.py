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

    The network of `keras.applications.ResNet50(include_top=False,
    weights=None, pooling="avg")`, layer for layer (built here so that its
    batch normalisation can be the fused one); ResNet-50's own preprocessing
    (RGB -> BGR, minus the ImageNet means) runs inside `call`, so inputs are
    raw RGB pixels in
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
        fused_batch_norm: compute every batch normalisation with one fused
            TensorFlow op (`keras_ssr.layers.FusedBatchNormalization`: the
            same variables and results up to float32 rounding; the step is
            faster, see BENCHMARKS.md). Weight files load either way; models
            saved before this option existed reload with Keras' layers.
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
        self.resnet = _resnet50(
            FusedBatchNormalization
            if self.fused_batch_norm
            else keras.layers.BatchNormalization
        )
        if self.weights_path is not None:
            _load_weights(self.weights_path, self.resnet)
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


def _resnet50(batch_norm):
    """ResNet-50 v1 without top, average-pooled, with `batch_norm` layers.

    The graph of `keras.applications.ResNet50(include_top=False,
    pooling="avg")`, layer for layer: same names, creation order and weights
    (so its weight files load), built with the given batch-norm class.
    """
    layers = keras.layers

    def bn(x, name):
        return batch_norm(axis=-1, epsilon=1.001e-5, name=name)(x)

    def block(x, filters, stride, shortcut_conv, name):
        shortcut = x
        if shortcut_conv:
            shortcut = layers.Conv2D(
                4 * filters, 1, strides=stride, name=f"{name}_0_conv"
            )(x)
            shortcut = bn(shortcut, f"{name}_0_bn")
        x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
        x = layers.Activation("relu", name=f"{name}_1_relu")(bn(x, f"{name}_1_bn"))
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
        x = layers.Activation("relu", name=f"{name}_2_relu")(bn(x, f"{name}_2_bn"))
        x = bn(layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x), f"{name}_3_bn")
        x = layers.Add(name=f"{name}_add")([shortcut, x])
        return layers.Activation("relu", name=f"{name}_out")(x)

    inputs = keras.Input((None, None, 3))
    x = layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.Activation("relu", name="conv1_relu")(bn(x, "conv1_bn"))
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    # (stage, filters, blocks, stride of the first block)
    for stage, filters, blocks, stride in (
        (2, 64, 3, 1),
        (3, 128, 4, 2),
        (4, 256, 6, 2),
        (5, 512, 3, 2),
    ):
        for i in range(1, blocks + 1):
            first = i == 1
            x = block(
                x, filters, stride if first else 1, first, f"conv{stage}_block{i}"
            )
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name="resnet50")


def _load_weights(path, resnet):
    """Loads a weights file into `resnet`, whichever batch norm wrote it.

    Keras' own download (a legacy `.h5`, read by layer order) loads into
    either. A `.weights.h5` file names layers by their class, so one written
    from the other batch-norm class is read into a twin network of that class
    and its weights copied over (the two have the same weights in the same
    order).
    """
    try:
        resnet.load_weights(path)
    except ValueError:
        fused = any(
            isinstance(layer, FusedBatchNormalization) for layer in resnet.layers
        )
        twin = _resnet50(
            keras.layers.BatchNormalization if fused else FusedBatchNormalization
        )
        twin.load_weights(path)
        resnet.set_weights(twin.get_weights())


def _check_file(path):
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(
            f"ResNet50Backbone: weights file {path} not found. Give a local "
            "ResNet-50 no-top weights file (e.g. Keras' "
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, from "
            "~/.keras/models/ on a machine that has downloaded it) or "
            "weights_path=None for a random initialisation."
        )
