"""The fixed teacher of the prediction-powered methods (PP-SSL and baselines)."""

import numpy as np

from keras_ssr.data.split import SSRSplit
from keras_ssr.models.teacher import Teacher

# Methods that train on a fixed teacher's pseudo-labels.
TEACHER_METHODS = ("ppssl", "ppi_fixed", "ppi_closed_form", "ssl", "only_labeled")


def prepare_teacher(method, data, split, config, seed):
    """`(teacher, split)`: the teacher and the split it leaves for training.

    `--teacher linear_pretrain` fits a least-squares linear teacher on
    `--pretrain-size` rows taken (seeded) out of the unlabeled training rows,
    so teacher and student data are disjoint; any other value is a path to a
    SavedModel (from `keras_ssr.export`) or a `.keras` file. Other methods get
    `(None, split)`.
    """
    if method not in TEACHER_METHODS:
        return None, split
    if config.teacher != "linear_pretrain":
        return Teacher.load(config.teacher), split
    size = int(config.pretrain_size)
    if not 1 <= size < len(split.unlabeled):
        raise ValueError(
            f"--pretrain-size {size} must be in [1, {len(split.unlabeled) - 1}]: "
            "the teacher's pretrain rows come out of the unlabeled rows."
        )
    order = np.random.default_rng(seed + 2).permutation(split.unlabeled)
    pretrain, unlabeled = order[:size], np.sort(order[size:])
    teacher = Teacher.fit_linear(data.x[pretrain], data.y[pretrain])
    return teacher, SSRSplit(split.labeled, unlabeled, split.validation, split.test)
