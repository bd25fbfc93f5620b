"""`RunContext`: what a trainer hands a method before `fit` (data, views, logs)."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class RunContext:
    """The training run around a method, for its `prepare` and `callbacks` hooks.

    A trainer builds one per (method, seed) after the split, the views and the
    teacher labels exist; a method reads only what it needs (HPL's diagnostics
    the unlabeled rows and views, PPI++ the labeled rows and teacher labels).

    Args:
        log_dir: the run's TensorBoard directory for this method and seed.
        unlabeled_x: raw inputs of the unlabeled training rows.
        views: the `(x, seed) -> (weak, strong)` views of the training stream.
        labeled: `(x, y)` of the labeled training rows, `y` standardised.
        teacher_labels: a fixed teacher's standardised predictions
            `(yhat_labeled, yhat_unlabeled)` on those rows (or `None`).
        unlabeled_y: ground truth of `unlabeled_x` in target units, given only
            in benchmark mode, for diagnostics (never for training).
        unlabeled_groups: group id of each unlabeled row (or `None`).
        group_names: names of the group ids.

    Example:

    >>> context = RunContext("/tmp/tb", np.zeros((4, 2)), lambda x, s: (x, x))
    >>> context.benchmark_mode
    False
    """

    log_dir: str
    unlabeled_x: np.ndarray
    views: object
    labeled: tuple | None = None
    teacher_labels: tuple | None = None
    unlabeled_y: np.ndarray | None = None
    unlabeled_groups: np.ndarray | None = None
    group_names: tuple = ()

    @property
    def benchmark_mode(self):
        """Whether the unlabeled ground truth is known (for diagnostics only)."""
        return self.unlabeled_y is not None
