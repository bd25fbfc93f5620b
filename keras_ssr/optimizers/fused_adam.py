"""`FusedAdam`: Keras 3 Adam whose per-variable update is one TensorFlow op."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_ssr")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with each variable's update in one fused kernel.

    Keras 3's Adam on the TensorFlow backend updates a variable with about
    ten elementwise ops (each allocating a full-size temporary) and three
    assignments; this optimizer runs `tf.raw_ops.ResourceApplyAdam` instead:
    one multithreaded pass over the variable and its two slots. The update
    rule is Keras' own, with `t = iterations + 1`:
    `m <- m + (1 - beta_1)(g - m)`, `v <- v + (1 - beta_2)(g^2 - v)`,
    `p <- p - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + eps)`,
    up to float32 rounding: the kernel forms `1 - beta_2` in float32 where
    Keras multiplies by the Python float, so the second moments differ by
    ~1.3e-5 relative and the updates by ~1e-5 of their size.
    Variables, slots, arguments and `get_config` are those of
    `keras.optimizers.Adam` (checkpoints are interchangeable). `amsgrad`,
    sparse gradients and variables other than float32 use the Keras update.

    Args:
        **kwargs: the arguments of `keras.optimizers.Adam`.

    Example:

    >>> optimizer = FusedAdam(learning_rate=1e-3)
    >>> v = keras.Variable([1.0, 2.0])
    >>> optimizer.apply([keras.ops.convert_to_tensor([0.5, -0.5])], [v])

    References:
        Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015
        (Algorithm 1, with the epsilon-hat form of section 2).
    """

    def update_step(self, gradient, variable, learning_rate):
        if not self._fusable(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        local_step = tf.cast(self.iterations + 1, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable),
            m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), local_step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), local_step),
            lr=tf.cast(learning_rate, dtype),
            beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype),
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
        )

    def _fusable(self, gradient, variable):
        return (
            keras.backend.backend() == "tensorflow"
            and not self.amsgrad
            and not isinstance(gradient, tf.IndexedSlices)
            and keras.backend.standardize_dtype(variable.dtype) == "float32"
        )


def _handle(variable):
    """The resource handle of a Keras or TF variable (this replica's copy)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle
