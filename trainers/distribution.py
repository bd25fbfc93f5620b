"""Distribution strategy, XLA and determinism settings of a training run.

`make_strategy(name)` maps the `--strategy` flag onto a `tf.distribute`
strategy; `check_jit_compile` refuses XLA where TensorFlow cannot run it;
`set_deterministic` seeds every generator and turns on op determinism.
"""

import json
import os
import sys

import keras
import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name="auto"):
    """The `tf.distribute` strategy named by `--strategy`.

    - `auto`: `MirroredStrategy` over all GPUs when more than one is visible,
      else TensorFlow's default (single-device) strategy;
    - `one_device`: the default strategy (first GPU if any, else the CPU);
    - `mirrored`: `MirroredStrategy` over every visible GPU (the CPU without);
    - `multi_worker`: `MultiWorkerMirroredStrategy` from the `TF_CONFIG`
      environment variable. Create it before any other TensorFlow op.

    Args:
        name: one of `STRATEGIES`.

    Returns:
        A `tf.distribute.Strategy`.

    Example:

    >>> make_strategy("one_device").num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_tf_config(text):
    """Checks a `TF_CONFIG` value for `MultiWorkerMirroredStrategy`.

    Raises:
        ValueError: with an example of a valid value, if `text` is missing, is
            not JSON, or lacks `cluster.worker` or a valid `task`.
    """
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    try:
        config = json.loads(text or "")
        workers = config["cluster"]["worker"]
        task = config["task"]
        valid = task["type"] in config["cluster"] and 0 <= task["index"] < len(
            config["cluster"][task["type"]]
        )
    except (ValueError, KeyError, TypeError):
        valid, workers = False, None
    if not valid or not workers:
        raise ValueError(
            f"--strategy multi_worker needs TF_CONFIG describing the cluster and "
            f"this process's task, e.g. {example} (got {text!r})."
        )
    return config


def is_chief(strategy):
    """Whether this process writes results (always true outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker"
        and task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def check_jit_compile(jit_compile, strategy):
    """Refuses `--jit-compile` under a multi-replica strategy.

    TensorFlow cannot run an XLA-compiled train step under `MirroredStrategy` or
    `MultiWorkerMirroredStrategy` (the compiled step reads a variable on another
    replica's device).
    """
    distributed = strategy.num_replicas_in_sync > 1 or isinstance(
        strategy,
        (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy),
    )
    if jit_compile and distributed:
        raise ValueError(
            "--jit-compile cannot be combined with a MirroredStrategy or "
            "MultiWorkerMirroredStrategy (TensorFlow cannot run XLA-compiled "
            "steps under them): drop --jit-compile or use --strategy one_device."
        )


def set_deterministic(seed, jit_compile=False):
    """Seeds Python, NumPy, TF and Keras and enables TF op determinism.

    Op determinism makes every op (including `tf.data`'s parallel map and
    shuffles) reproducible run to run on the same machine and software, at some
    speed cost. TensorFlow then silently ignores `jit_compile=True`; this
    function says so on stderr.

    Args:
        seed: the run's seed.
        jit_compile: whether `--jit-compile` was asked for (only for the notice).
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    if jit_compile:
        print(
            "warning: --deterministic enables TF op determinism, which disables "
            "XLA: --jit-compile has no effect in this run.",
            file=sys.stderr,
        )
