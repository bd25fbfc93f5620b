"""`AdamL2`: Adam with an L2 penalty added to the gradient (torch's Adam)."""

import keras

from keras_ssr.optimizers.fused_adam import FusedAdam


@keras.saving.register_keras_serializable(package="keras_ssr")
class AdamL2(FusedAdam):
    """Adam whose gradient of each variable w gets `+ l2 * w` before the step.

    This is `torch.optim.Adam(weight_decay=l2)`: the L2 penalty `l2/2 * |w|^2`
    is part of the gradient that Adam normalises (coupled), unlike Keras'
    `weight_decay` argument, which decays the weights outside Adam's update
    (decoupled, AdamW). Reference implementations written in PyTorch (e.g.
    HPL's) use the coupled form; this optimizer reproduces it (with Keras'
    placement of epsilon, `lr_t * m / (sqrt(v) + eps)`, which differs from
    torch's `lr * m_hat / (sqrt(v_hat) + eps)` only at the epsilon level).
    The Adam step itself is `FusedAdam`'s: one fused kernel per float32
    variable (Keras' update for other dtypes).

    Args:
        learning_rate: a float or a `keras.optimizers.schedules` schedule.
        l2: the L2 coefficient (torch's `weight_decay`), >= 0.
        **kwargs: other `keras.optimizers.Adam` arguments.

    Example:

    >>> w = keras.Variable([1.0])
    >>> optimizer = AdamL2(learning_rate=0.1, l2=0.5)
    >>> optimizer.apply([keras.ops.convert_to_tensor([0.0])], [w])
    >>> round(float(w.numpy()[0]), 4)  # gradient 0 + 0.5 * 1: one Adam step
    0.9
    """

    def __init__(self, learning_rate=0.001, l2=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not float(l2) >= 0.0:
            raise ValueError(f"l2 must be >= 0, got {l2}.")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            value = keras.ops.convert_to_tensor(variable)
            gradient = gradient + keras.ops.cast(self.l2, value.dtype) * value
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(l2=self.l2)
        return config
