"""`FusedBatchNormalization`: Keras 3 batch normalisation on TF's fused kernel."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssr")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by one fused TensorFlow op.

    Keras 3's batch normalisation on the TensorFlow backend is built from
    elementwise ops (moments, then `(x - mean) * rsqrt(var + eps) * gamma +
    beta`), and its gradient from a dozen more; on CPU this layer runs
    `tf.raw_ops.FusedBatchNormV3` instead, one kernel forward and one
    (`FusedBatchNormGradV3`) backward, which oneDNN implements natively. The
    layer is otherwise the Keras layer: same variables, same arguments and
    `get_config`, same training/inference behaviour (batch statistics and a
    moving-average update when `training=True` and the layer is trainable,
    the moving statistics otherwise), and the same moving-statistics update
    `moving = moving * momentum + batch * (1 - momentum)` with the *biased*
    batch variance (the fused kernel returns the Bessel-corrected one; it is
    rescaled by `(n - 1) / n`).

    The fused kernel is used for 4-D channels-last inputs with no mask,
    `synchronized=False` and `renorm=False`, and float16/bfloat16/float32
    inputs (computed in float32, as the Keras layer does); anything else
    (float64, other ranks or axes) falls back to the Keras computation.

    Args:
        **kwargs: the arguments of `keras.layers.BatchNormalization`.

    Example:

    >>> layer = FusedBatchNormalization(epsilon=1.001e-5)
    >>> x = keras.random.normal((4, 8, 8, 3))
    >>> y = layer(x, training=True)
    >>> tuple(y.shape)
    (4, 8, 8, 3)

    References:
        Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
        Training by Reducing Internal Covariate Shift", ICML 2015 (Algorithm 1).
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        gamma = self._param(self.gamma if self.scale else None, channels, 1.0)
        beta = self._param(self.beta if self.center else None, channels, 0.0)
        if training and self.trainable:
            # Algorithm 1: normalise with the batch moments.
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.zeros((0,), tf.float32),
                variance=tf.zeros((0,), tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            self._update_moving_statistics(x, mean, variance)
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        return tf.cast(y, self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.synchronized
            and not self.renorm
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype)
            in ("float16", "bfloat16", "float32")
            and self.moving_mean.dtype in ("float16", "bfloat16", "float32")
        )

    @staticmethod
    def _param(variable, channels, fill):
        if variable is None:
            return tf.fill((channels,), tf.constant(fill, tf.float32))
        return tf.cast(variable, tf.float32)

    def _update_moving_statistics(self, x, mean, unbiased_variance):
        # The kernel's batch variance is Bessel-corrected: sum / (n - 1).
        shape = tf.shape(x)
        n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        variance = unbiased_variance * tf.maximum(n - 1.0, 0.0) / n
        momentum = self.momentum
        moving_mean = tf.cast(self.moving_mean, tf.float32)
        moving_variance = tf.cast(self.moving_variance, tf.float32)
        self.moving_mean.assign(
            tf.cast(
                moving_mean * momentum + mean * (1.0 - momentum), self.moving_mean.dtype
            )
        )
        self.moving_variance.assign(
            tf.cast(
                moving_variance * momentum + variance * (1.0 - momentum),
                self.moving_variance.dtype,
            )
        )
