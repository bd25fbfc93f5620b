"""The heteroscedastic pseudo-label loss of HPL (eq. 3) and its reductions."""

import keras
import tensorflow as tf

LOSS_FORMS = ("reference", "paper")


def batch_reduce(values, form):
    """Reduces per-example losses: a mean (`reference`) or a sum (`paper`).

    The `paper` sum is taken over the global batch: under `tf.distribute` each
    replica's sum is multiplied by the number of replicas, so that after the
    usual `1 / num_replicas` loss scaling and the cross-replica gradient sum (or
    a MEAN all-reduce) the result is the gradient of the global sum.

    Args:
        values: per-example losses, any shape.
        form: `"reference"` (mean) or `"paper"` (sum).
    """
    if form == "reference":
        return keras.ops.mean(values)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return keras.ops.sum(values) * replicas


def heteroscedastic_loss(pseudo_labels, predictions, log_variance, form="reference"):
    """Uncertainty-weighted pseudo-label loss L_u (HPL eq. 3).

    `paper`: `sum_j exp(-z_j) (yhat_j - r_j)^2 + sum_j z_j`.
    `reference` (the authors' code): `mean_j exp(-z_j) / 2 (yhat_j - r_j)^2 +
    z_j / 2`, the Gaussian negative log-likelihood with variance `exp(z)`.
    With `z = 0` (sigma^2 = 1), `reference` is half the plain pseudo-label MSE.

    Args:
        pseudo_labels: yhat, shape `(batch, 1)` (stop-gradient by the caller).
        predictions: r, shape `(batch, 1)`.
        log_variance: z = log sigma^2, shape `(batch, 1)`.
        form: `"reference"` or `"paper"`.

    Example:

    >>> z = keras.ops.zeros((2, 1))
    >>> float(heteroscedastic_loss(keras.ops.ones((2, 1)), z, z))
    0.5
    """
    if form not in LOSS_FORMS:
        raise ValueError(f"form must be one of {LOSS_FORMS}, got {form!r}.")
    squared = keras.ops.square(pseudo_labels - predictions)
    per_example = keras.ops.exp(-log_variance) * squared + log_variance
    if form == "reference":
        per_example = 0.5 * per_example
    return batch_reduce(per_example, form)
