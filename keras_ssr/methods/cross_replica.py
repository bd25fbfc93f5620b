"""Batch-global values inside a `tf.distribute` step: gathers, sums, row tables.

A method whose loss couples the rows of a batch (pairs, a percentile, a
similarity to the labeled batch) or keeps per-example state must see the
*global* batch under `MirroredStrategy`, or two replicas would not train like
one device. These helpers do that in a replica context and are the identity
without a multi-replica strategy, so a method's code is the same in both.
"""

import tensorflow as tf


def _replica_context():
    """The replica context of a real multi-replica strategy, else `None`."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def all_gather(x):
    """`x` concatenated over the replicas along axis 0 (the global batch).

    Differentiable: the gradient of a replica's rows is the sum of the
    gradients every replica sends back to them, so a loss computed
    identically on every replica from gathered tensors, divided by the number
    of replicas (as `SSRModel.compute_gradients` does) and summed by the
    optimizer, has the one-device gradient.

    Example:

    >>> float(all_gather(tf.constant([1.0, 2.0]))[1])
    2.0
    """
    context = _replica_context()
    return x if context is None else context.all_gather(x, axis=0)


def all_sum(x):
    """`x` summed over the replicas (e.g. a count of rows kept by a mask)."""
    context = _replica_context()
    return x if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, x)


def replica_rows(x, num_local):
    """This replica's `num_local` rows of a global-batch tensor `x`.

    Rows follow the replica order of `all_gather` (replica 0 first), which is
    how a distributed dataset splits a global batch.
    """
    context = _replica_context()
    if context is None:
        return x
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * num_local
    return x[start : start + num_local]


def scatter_rows(variables, index, values):
    """Writes `values[k]` into row `index[k]` of each table in `variables`.

    `index` and each of `values` are this replica's rows; they are gathered
    over the replicas first and every replica writes the global rows into its
    own copy of each table, so all copies stay identical (the tables must be
    created with `aggregation="none"`). An index that occurs twice in the
    global batch keeps one of its values.

    Args:
        variables: Keras variables of shape `(num_rows, ...)`.
        index: int32 row positions, shape `(batch,)`.
        values: one tensor per variable, shape `(batch, ...)`.
    """
    index = all_gather(index)
    for variable, value in zip(variables, values, strict=True):
        table = getattr(variable, "value", variable)
        value = tf.cast(all_gather(value), table.dtype)
        table.scatter_update(tf.IndexedSlices(value, index))
