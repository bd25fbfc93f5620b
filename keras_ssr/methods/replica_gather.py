"""Batch-global losses under `tf.distribute`: gather a step's rows from every replica.

A loss that is not a sum over examples (a GP marginal likelihood over the
labeled batch, pairs and loops across the batch) differs from one device's
when each replica computes it on its own share of the batch. Gathering the
rows of every replica inside the step gives each replica the global batch, so
every replica computes the one-device loss. `all_gather` is differentiable: the
gradient with respect to a replica's own rows is the sum over replicas of the
gradients with respect to their slice of the gathered tensor. With each replica
computing the same loss L and scaling it by 1/R (`SSRModel.compute_gradients`),
the optimizer's sum over replicas is then exactly one device's gradient of L.
"""

import tensorflow as tf

from keras_ssr.methods.ssr_model import num_replicas


def gather_rows(x):
    """`x` with the rows of every replica, in replica order (the global batch).

    The identity on one device. Call it inside the train step (replica
    context).

    Example:

    >>> gather_rows(tf.ones((2, 3))).shape  # one device: the batch itself
    TensorShape([2, 3])
    """
    if num_replicas() == 1:
        return x
    return tf.distribute.get_replica_context().all_gather(x, axis=0)


def local_rows(gathered, local_count):
    """This replica's rows of a gathered batch `gathered` (see `gather_rows`).

    Args:
        gathered: a tensor whose rows are the replicas' rows in replica order.
        local_count: the number of rows this replica contributed.
    """
    if num_replicas() == 1:
        return gathered
    context = tf.distribute.get_replica_context()
    counts = context.all_gather(tf.reshape(local_count, (1,)), axis=0)
    start = tf.reduce_sum(counts[: context.replica_id_in_sync_group])
    return gathered[start : start + local_count]
