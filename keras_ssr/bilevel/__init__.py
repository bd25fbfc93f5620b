"""Bilevel-optimisation building blocks: functional, differentiable head unrolls."""

from keras_ssr.bilevel.head_unroll import (
    AdamState,
    adam_step,
    dense_apply,
    mean_across_replicas,
    read_adam_state,
    sgd_step,
    unroll_head,
    zero_adam_state,
)

__all__ = [
    "AdamState",
    "adam_step",
    "dense_apply",
    "mean_across_replicas",
    "read_adam_state",
    "sgd_step",
    "unroll_head",
    "zero_adam_state",
]
