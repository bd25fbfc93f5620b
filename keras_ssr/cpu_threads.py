"""CPU thread settings of TensorFlow: apply them once, and say what runs."""

import os

import tensorflow as tf


def cpu_thread_settings():
    """What this process's TensorFlow runs with on the CPU, as a dict.

    Keys: `intra_op_threads` and `inter_op_threads` (0 means TensorFlow's
    default: one thread per logical CPU for both pools), `cpus` (logical CPUs
    this process may use), `onednn` (`TF_ENABLE_ONEDNN_OPTS`; unset means on
    for x86 Linux builds) and `omp_num_threads` (`OMP_NUM_THREADS`, unset if
    absent).

    Example:

    >>> settings = cpu_thread_settings()
    >>> sorted(settings)[:2]
    ['cpus', 'inter_op_threads']
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count()
    return {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpus": cpus,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


def set_cpu_threads(intra_op=None, inter_op=None, log=print):
    """Sets TensorFlow's intra-/inter-op thread pools and logs the result.

    Must run before TensorFlow executes its first op (before any model is
    built); afterwards TensorFlow refuses the change and this raises a
    `RuntimeError` saying so. `None` leaves a pool at its current setting;
    0 restores TensorFlow's default (one thread per logical CPU).

    Args:
        intra_op: threads that one op (a convolution, a matmul) splits its
            work over.
        inter_op: independent ops that may run at the same time.
        log: callable taking one line of text (`None`: silent).

    Returns:
        `cpu_thread_settings()` after the change.

    Example:

    >>> settings = set_cpu_threads(log=None)  # only reports

    References:
        TensorFlow, `tf.config.threading`.
    """
    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError as error:
        raise RuntimeError(
            "TensorFlow's thread pools can only be set before it runs its "
            "first op: call set_cpu_threads at the start of the program, "
            f"before building a model or a dataset ({error})."
        ) from None
    settings = cpu_thread_settings()
    if log is not None:
        log(format_cpu_thread_settings(settings))
    return settings


def format_cpu_thread_settings(settings):
    """One line describing `cpu_thread_settings()` output."""

    def pool(n):
        return f"{n}" if n else f"default ({settings['cpus']})"

    return (
        f"CPU threads: intra-op {pool(settings['intra_op_threads'])}, "
        f"inter-op {pool(settings['inter_op_threads'])}, "
        f"{settings['cpus']} logical CPUs, oneDNN {settings['onednn']}, "
        f"OMP_NUM_THREADS {settings['omp_num_threads']}"
    )
