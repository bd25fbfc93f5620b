"""`apply_if`: an optimizer step taken only when a traced condition holds."""

import tensorflow as tf


def apply_if(optimizer, condition, grads, variables):
    """Applies `grads` with `optimizer` only when `condition` is true.

    An optimizer step is a synchronisation point under `tf.distribute`
    (`merge_call`), which TensorFlow refuses inside `tf.cond` in a replica
    context. So, with several replicas, the gradients are summed across
    replicas in a `merge_call` first and the `tf.cond` runs in cross-replica
    context, taking the optimizer's `update_step` per variable as Keras' own
    distributed update does (so clipping and EMA options of `apply` are not
    used there); with one replica it is a plain `tf.cond` around `apply`.
    Skipped steps leave the optimizer's state (iterations, slots) untouched.

    Args:
        optimizer: a built Keras optimizer.
        condition: scalar boolean tensor.
        grads: gradients, scaled as for `optimizer.apply` in this context.
        variables: the variables to update.

    Example:

    >>> import keras
    >>> v = keras.Variable(1.0)
    >>> opt = keras.optimizers.SGD(0.5)
    >>> opt.build([v])
    >>> apply_if(opt, tf.constant(False), [tf.constant(1.0)], [v])
    >>> float(v.numpy())
    1.0
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        _cond_apply(optimizer, condition, grads, variables)
        return
    context.merge_call(
        _cross_replica_apply, args=(optimizer, condition, grads, variables)
    )


def _cross_replica_apply(strategy, optimizer, condition, grads, variables):
    reduced = strategy.extended.batch_reduce_to(
        tf.distribute.ReduceOp.SUM,
        [(g, getattr(v, "value", v)) for g, v in zip(grads, variables, strict=True)],
    )
    condition = strategy.experimental_local_results(condition)[0]

    def step():
        # `optimizer.apply` would merge_call again; in cross-replica context
        # take its update the way Keras' TF optimizer does, per variable.
        rate = optimizer.learning_rate
        for grad, variable in zip(reduced, variables, strict=True):
            strategy.extended.update(
                getattr(variable, "value", variable),
                lambda var, g: optimizer.update_step(g, var, rate),
                args=(grad,),
                group=False,
            )
        optimizer.iterations.assign_add(1)
        return tf.constant(True)

    tf.cond(condition, step, lambda: tf.constant(False))


def _cond_apply(optimizer, condition, grads, variables):
    def step():
        optimizer.apply(grads, variables)
        return tf.constant(True)

    tf.cond(condition, step, lambda: tf.constant(False))
