"""The fixed teacher of the prediction-powered methods (PP-SSL and baselines)."""

import numpy as np

from keras_ssr.data.split import SSRSplit
from keras_ssr.models.teacher import Teacher


def prepare_teacher(entry, data, split, config, seed):
    """`(teacher, split)`: the teacher and the split it leaves for training.

    For a method that declares `uses_teacher`: `--teacher linear_pretrain`
    fits a least-squares linear teacher on `--pretrain-size` rows taken
    (seeded) out of the unlabeled training rows, so teacher and student data
    are disjoint; any other value is a path to a SavedModel (from
    `keras_ssr.export`) or a `.keras` file. Other methods get `(None, split)`.

    Args:
        entry: the method's registry entry.
        data: the `RegressionData`.
        split: the seed's `SSRSplit`.
        config: the `TeacherConfig` section.
        seed: the run's seed.
    """
    if not entry.uses_teacher:
        return None, split
    if config.teacher != "linear_pretrain":
        return Teacher.load(config.teacher), split
    size = int(config.pretrain_size)
    # The pretrain rows need targets: only unlabeled rows whose target was hidden.
    pool = split.unlabeled[data.has_target[split.unlabeled]]
    if not 1 <= size < len(pool):
        raise ValueError(
            f"--pretrain-size {size} must be in [1, {len(pool) - 1}]: "
            "the teacher's pretrain rows come out of the unlabeled rows with a "
            "target."
        )
    order = np.random.default_rng(seed + 2).permutation(pool)
    pretrain = order[:size]
    unlabeled = np.setdiff1d(split.unlabeled, pretrain)
    teacher = Teacher.fit_linear(data.x[pretrain], data.y[pretrain])
    return teacher, SSRSplit(split.labeled, unlabeled, split.validation, split.test)
