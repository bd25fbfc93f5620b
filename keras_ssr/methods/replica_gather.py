"""Batch-global values inside a `tf.distribute` step: gathers, sums, row tables.

A method whose loss couples the rows of a batch (pairs, a percentile, a
similarity to the labeled batch) or that keeps per-example state must see the
*global* batch under `MirroredStrategy`, or two replicas would not train like
one device. These helpers do that in a replica context and are the identity
without a multi-replica strategy, so a method's code is the same in both.
"""

import tensorflow as tf


def replica_context():
    """The replica context of a real multi-replica strategy, else `None`."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def gather_rows(x):
    """`x` with the rows of every replica, in replica order (the global batch).

    Differentiable: the gradient of a replica's rows is the sum of the
    gradients every replica sends back to them, so a loss computed
    identically on every replica from gathered tensors, divided by the number
    of replicas (as `SSRModel.compute_gradients` does) and summed by the
    optimizer, has the one-device gradient.

    Example:

    >>> gather_rows(tf.ones((2, 3))).shape  # one device: the batch itself
    TensorShape([2, 3])
    """
    context = replica_context()
    return x if context is None else context.all_gather(x, axis=0)


def sum_over_replicas(x):
    """`x` summed over the replicas (e.g. a count of rows)."""
    context = replica_context()
    if context is None:
        return x
    return context.all_reduce(tf.distribute.ReduceOp.SUM, x)


def local_rows(gathered, local_count):
    """This replica's rows of a global-batch tensor (see `gather_rows`).

    Args:
        gathered: a tensor whose rows are the replicas' rows in replica order.
        local_count: the number of rows this replica contributed.
    """
    context = replica_context()
    if context is None:
        return gathered
    counts = context.all_gather(tf.reshape(local_count, (1,)), axis=0)
    start = tf.reduce_sum(counts[: context.replica_id_in_sync_group])
    return gathered[start : start + local_count]


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
    index = gather_rows(index)
    for variable, value in zip(variables, values, strict=True):
        table = getattr(variable, "value", variable)
        value = tf.cast(gather_rows(value), table.dtype)
        table.scatter_update(tf.IndexedSlices(value, index))
