"""Functional, differentiable one-step unroll of a regression head.

HPL's bilevel step (paper eq. 6-8) and L2I's imputation step both need the head
after one optimizer step, W' = step(W, dL_inner/dW), as a differentiable
function of whatever the inner loss depends on (g_phi's parameters, imputed
labels). Only the head is unrolled, over stop-gradient features (HPL section
3.4), so the cost stays near a plain step.

Everything here is pure: functions take and return tensors and never assign to
a variable, so the real head is never overwritten. TensorFlow backend only
(nested `tf.GradientTape` and `tf.distribute`).
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_ssr.optimizers.adam_l2 import AdamL2

_METHODS = ("sgd", "adam")
# The optimizers whose step `adam_step` reproduces exactly.
_ADAMS = (keras.optimizers.Adam, AdamL2)


def dense_apply(features, params):
    """Applies a Dense head `features @ kernel + bias` functionally.

    Args:
        features: tensor of shape `(batch, d)`.
        params: `(kernel, bias)` with shapes `(d, units)` and `(units,)`.

    Returns:
        Tensor of shape `(batch, units)`.

    Example:

    >>> head = keras.layers.Dense(1)
    >>> head.build((None, 3))
    >>> y = dense_apply(tf.ones((2, 3)), (head.kernel, head.bias))
    """
    kernel, bias = params
    return tf.matmul(features, kernel) + bias


def sgd_step(params, grads, learning_rate):
    """One plain gradient-descent step `p - learning_rate * g` (eq. 7), pure.

    Args:
        params: list of tensors (or variables, read but not changed).
        grads: list of tensors, same structure as `params`.
        learning_rate: float or scalar tensor.

    Returns:
        List of new parameter tensors, differentiable w.r.t. `grads` and
        `learning_rate`.

    Example:

    >>> new = sgd_step([tf.ones((3, 1))], [tf.ones((3, 1))], 0.1)
    """
    return [
        p - _cast(learning_rate, p.dtype) * g
        for p, g in zip(params, grads, strict=True)
    ]


def _cast(value, dtype):
    """Casts to `dtype`; Python numbers go straight to `dtype` (no float32 stop)."""
    if isinstance(value, int | float):
        return tf.constant(value, dtype)
    return tf.cast(value, dtype)


def _safe_sqrt(x):
    """`sqrt(x)` for x >= 0 whose gradient at x = 0 is 0 instead of inf.

    Uses the double-`where` trick so the backward pass never evaluates
    `0.5 / sqrt(0)` (which times a zero upstream gradient gives NaN).
    """
    positive = x > 0
    root = tf.sqrt(tf.where(positive, x, tf.ones_like(x)))
    return tf.where(positive, root, tf.zeros_like(x))


def adam_step(
    params,
    grads,
    momentums,
    velocities,
    iterations,
    learning_rate,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-7,
    l2=0.0,
):
    """One Adam step with Keras 3's exact update rule, pure and differentiable.

    Matches `keras.optimizers.Adam.update_step` (amsgrad off) and, with
    `l2 > 0`, `AdamL2` (torch's coupled weight decay, which the reference
    HPL code's differentiable Adam also applies): first `g <- g + l2 * p`, then
    with `t = iterations + 1`, `m <- m + (1 - beta_1)(g - m)`,
    `v <- v + (1 - beta_2)(g^2 - v)`,
    `p <- p - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)`
    (epsilon is Keras' "epsilon hat": added to sqrt(v), not bias-corrected).

    The derivative of `sqrt(v)` is infinite at v = 0, which happens when a
    gradient is exactly 0 and its velocity slot is still 0 (fresh state, unused
    parameter), or when `g^2` underflows (|g| < ~1e-19 in float32). There
    `sqrt` gets gradient 0 (`_safe_sqrt`, the double-`where` trick). In the
    first case this is exact for the composite step: `v = (1 - beta_2) g^2`,
    and `d sqrt(v) / dg = sqrt(1 - beta_2) * sign(g)` only enters the update
    multiplied by `m` = 0. A plain `tf.sqrt` gives NaN there under XLA (eager
    TF happens to return 0 for a zero upstream gradient), and -inf/NaN in both
    modes after an underflow (m != 0, v = 0).

    Args:
        params: list of parameter tensors (or variables, read only).
        grads: list of gradient tensors, same structure.
        momentums: list of first-moment slots `m` (tensors), same structure.
        velocities: list of second-moment slots `v`, same structure.
        iterations: number of steps already taken (the optimizer's
            `iterations`, before this step).
        learning_rate: float or scalar tensor (for an optimizer with a
            schedule: its current value, `optimizer.learning_rate`).
        beta_1, beta_2, epsilon: Adam hyper-parameters (Keras defaults).
        l2: coefficient of the L2 penalty added to the gradient (`AdamL2`'s
            `l2`; 0: plain Adam). Its term `l2 * p` does not depend on what
            the inner loss depends on, but it moves the step through the moments.

    Returns:
        List of new parameter tensors (slots are not returned).

    Example:

    >>> p, g = [tf.ones((3, 1))], [tf.fill((3, 1), 0.5)]
    >>> zeros = [tf.zeros((3, 1))]
    >>> new = adam_step(p, g, zeros, zeros, iterations=0, learning_rate=1e-3)
    """
    new_params = []
    for p, g, m, v in zip(params, grads, momentums, velocities, strict=True):
        dtype = p.dtype
        local_step = tf.cast(iterations, dtype) + 1
        # As Keras: the powers use `cast(beta)`, which sends a Python float
        # through float32 (matters only for float64 variables), while the
        # moment updates multiply by the Python number `1 - beta`.
        alpha = (
            _cast(learning_rate, dtype)
            * tf.sqrt(1 - tf.pow(tf.cast(beta_2, dtype), local_step))
            / (1 - tf.pow(tf.cast(beta_1, dtype), local_step))
        )
        g = tf.cast(g, dtype)
        if l2:  # as AdamL2.update_step (also its float32 stop): + l2 * p
            g = g + tf.cast(l2, dtype) * p
        m = tf.cast(m, dtype)
        v = tf.cast(v, dtype)
        m = m + (g - m) * _cast(1 - beta_1, dtype)
        v = v + (tf.square(g) - v) * _cast(1 - beta_2, dtype)
        new_params.append(p - m * alpha / (_safe_sqrt(v) + _cast(epsilon, dtype)))
    return new_params


class AdamState(NamedTuple):
    """Adam slots and hyper-parameters for `adam_step` / `unroll_head`.

    Attributes:
        momentums: list of first-moment tensors, one per parameter.
        velocities: list of second-moment tensors, one per parameter.
        iterations: steps already taken (scalar).
        beta_1, beta_2, epsilon: Adam hyper-parameters.
        l2: the coupled L2 coefficient (`AdamL2`), 0 for a plain Adam.
    """

    momentums: list
    velocities: list
    iterations: object = 0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    l2: float = 0.0


def zero_adam_state(params, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """A fresh Adam state (zero slots, zero iterations) for `params`.

    Example:

    >>> state = zero_adam_state([tf.ones((3, 1)), tf.zeros((1,))])
    """
    zeros = [tf.zeros_like(p) for p in params]
    return AdamState(list(zeros), list(zeros), 0, beta_1, beta_2, epsilon)


def _value(hyper):
    return hyper() if callable(hyper) else hyper


def read_adam_state(optimizer, variables):
    """Snapshot of a Keras Adam optimizer's slots for `variables`.

    Lets a caller unroll exactly the step the real optimizer would take next:
    `adam_step(variables, grads, *state[:3], optimizer.learning_rate,
    *state[3:])`, or `unroll_head(..., method="adam", adam_state=state,
    learning_rate=optimizer.learning_rate)`; `optimizer.learning_rate` is the
    current value of a learning-rate schedule (at `optimizer.iterations`, as
    the optimizer's own next step uses it). Slots are read (as constants for
    any tape) through `optimizer._get_variable_index`; in a replica context
    this reads the local copies of mirrored slots.

    Args:
        optimizer: a built `keras.optimizers.Adam`, or an `AdamL2` (its `l2`
            goes into the state), whose variables include `variables`.
        variables: the head variables (e.g. `[head.kernel, head.bias]`).

    Returns:
        An `AdamState`.

    Raises:
        ValueError: if the optimizer is not an Adam or AdamL2, is not built,
            or uses options the functional step does not reproduce (amsgrad,
            decoupled weight decay, gradient clipping, gradient accumulation,
            EMA).

    Example:

    >>> head = keras.layers.Dense(1)
    >>> head.build((None, 3))
    >>> optimizer = keras.optimizers.Adam()
    >>> optimizer.build(head.trainable_variables)
    >>> state = read_adam_state(optimizer, [head.kernel, head.bias])
    """
    if type(optimizer) not in _ADAMS:
        raise ValueError(
            f"Expected a keras.optimizers.Adam or keras_ssr AdamL2, got "
            f"{optimizer!r}: the unrolled Adam step reproduces only these."
        )
    if not optimizer.built:
        raise ValueError("Build the optimizer first: optimizer.build(variables).")
    unsupported = {
        "amsgrad": optimizer.amsgrad,
        "weight_decay": optimizer.weight_decay,
        "clipnorm": optimizer.clipnorm,
        "clipvalue": optimizer.clipvalue,
        "global_clipnorm": optimizer.global_clipnorm,
        "gradient_accumulation_steps": optimizer.gradient_accumulation_steps,
        "use_ema": optimizer.use_ema,
    }
    used = sorted(name for name, value in unsupported.items() if value)
    if used:
        raise ValueError(
            f"adam_step does not reproduce Adam options {used}; "
            "use an optimizer without them for the unrolled head."
        )
    indices = [optimizer._get_variable_index(v) for v in variables]
    return AdamState(
        momentums=[tf.convert_to_tensor(optimizer._momentums[i]) for i in indices],
        velocities=[tf.convert_to_tensor(optimizer._velocities[i]) for i in indices],
        iterations=tf.convert_to_tensor(optimizer.iterations),
        beta_1=_value(optimizer.beta_1),
        beta_2=_value(optimizer.beta_2),
        epsilon=optimizer.epsilon,
        l2=getattr(optimizer, "l2", 0.0),
    )


def mean_across_replicas(grads):
    """MEAN all-reduce in a replica context of a real multi-replica strategy."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return grads
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, grads)


def unroll_head(
    params,
    inner_loss_fn,
    *,
    learning_rate,
    method="sgd",
    adam_state=None,
    all_reduce=True,
):
    """One differentiable optimizer step of the head on the inner loss (eq. 7).

    **Call this inside an outer `tf.GradientTape`** (the one that will take
    the hypergradient, eq. 8). It opens an inner tape watching `params`,
    computes `inner_loss_fn(params)` and takes its gradient while the outer
    tape is recording, so the outer tape sees the gradient as a function of
    everything the inner loss depends on (g_phi's weights, imputed labels).
    Outside an outer tape the returned values are correct but carry no
    second-order information.

    Under a `tf.distribute` strategy, each replica would otherwise step on its
    own gradient and, the outer loss being nonlinear in W', the hypergradient
    would differ from one device. With `all_reduce=True` (in a replica context
    of a multi-replica strategy) the head gradients are MEAN-all-reduced first
    (differentiably), so every replica holds the W' of the global batch:
    `inner_loss_fn` should then return the per-replica *mean* loss, not scaled
    by `num_replicas_in_sync`.

    No variable is assigned: the real head is never overwritten.

    Args:
        params: list of head parameters (tensors or variables), e.g.
            `[head.kernel, head.bias]`. Variables are read once.
        inner_loss_fn: callable `params -> scalar loss`, e.g.
            `lambda p: loss(y, dense_apply(features, p))`.
        learning_rate: step size alpha (float, scalar tensor or variable).
        method: `"sgd"` (`sgd_step`, the paper's eq. 7: no weight decay) or
            `"adam"` (`adam_step`, the reference code's differentiable Adam,
            with the state's coupled L2).
        adam_state: `AdamState` for `method="adam"` (e.g. from
            `read_adam_state`); `None` means a fresh state (zero slots), whose
            first step is close to `lr * sign(g)` and thus has a tiny
            hypergradient.
        all_reduce: all-reduce the head gradients across replicas (see above).

    Returns:
        `(new_params, grads)`: lists of tensors, both recorded by the outer
        tape.

    Example:

    >>> features = tf.random.normal((8, 3))
    >>> y = tf.random.normal((8, 1))
    >>> head = keras.layers.Dense(1)
    >>> head.build((None, 3))
    >>> weight = tf.Variable(1.0)
    >>> with tf.GradientTape() as outer:
    ...     def inner_loss(p):
    ...         return weight * tf.reduce_mean((y - dense_apply(features, p)) ** 2)
    ...     new_params, _ = unroll_head(
    ...         [head.kernel, head.bias], inner_loss, learning_rate=0.1)
    ...     outer_loss = tf.reduce_mean((y - dense_apply(features, new_params)) ** 2)
    >>> hypergradient = outer.gradient(outer_loss, weight)
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    params = [tf.convert_to_tensor(p) for p in params]
    with tf.GradientTape() as inner:
        inner.watch(params)
        inner_loss = inner_loss_fn(params)  # L_inner(W, phi), eq. 5
    # Taken while the caller's outer tape records: dL_inner/dW stays a
    # function of phi (nested tapes), which eq. 8 differentiates.
    grads = inner.gradient(
        inner_loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    if all_reduce:
        grads = mean_across_replicas(grads)
    if method == "sgd":
        # W'(phi) = W - alpha * dL_inner/dW (eq. 7); L_outer(W') is eq. 6.
        new_params = sgd_step(params, grads, learning_rate)
    else:
        state = adam_state if adam_state is not None else zero_adam_state(params)
        new_params = adam_step(
            params,
            grads,
            state.momentums,
            state.velocities,
            state.iterations,
            learning_rate,
            state.beta_1,
            state.beta_2,
            state.epsilon,
            state.l2,
        )
    return new_params, list(grads)
