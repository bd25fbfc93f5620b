"""`HPLDiagnostics`: TensorBoard panels of HPL's learned pseudo-label variances."""

import io
import json
import os
import re

import keras
import numpy as np
import tensorflow as tf


class HPLDiagnostics(keras.callbacks.Callback):
    """Writes, each epoch, what g_phi believes about the pseudo-labels.

    On a fixed sample of unlabeled rows (fixed weak/strong views), it writes to
    `log_dir` with its own summary writer:
    - `hpl/sigma2`: a histogram of sigma^2 = exp(z);
    - `hpl/mean_log_variance`: the mean of z;
    and, in benchmark mode (the unlabeled ground truth given):
    - `hpl/spearman_sigma2_vs_error`: Spearman's rank correlation between
      sigma^2 and the pseudo-label error |yhat - y| (a good g_phi gives large
      variances to bad pseudo-labels, so this should be positive);
    - `hpl/sigma2_vs_error`: a scatter-plot image of the two (paper Fig. 4);
    and, when the rows have groups (`unlabeled_groups`, e.g. the digit or
    clothing class of rotated images, where rotation-ambiguous classes such as
    the digits 0, 1 and 8 should get larger variances):
    - `hpl/group_mean_sigma2/<group>`: the mean sigma^2 of each group's rows;
    - `hpl/group_mean_error/<group>`: their mean |pseudo-label error|
      (benchmark mode only);
    - `hpl/sigma2_by_group`: a bar chart of the per-group means.

    The per-epoch values are also kept in `history` (a dict of lists, one
    entry per epoch: `"epoch"`, `"mean_log_variance"`, and with ground truth
    `"spearman"`; with groups `"group_mean_sigma2"` and `"group_mean_error"`,
    each `{group name: [value per epoch]}`) and written to
    `log_dir/history.json` after every epoch, for benchmark tables.

    Args:
        log_dir: directory for the event files.
        unlabeled_x: raw features of unlabeled rows.
        views: callable `(x, seed) -> (weak, strong)`, as in training.
        unlabeled_y: optional ground truth of `unlabeled_x` (target units).
        num_samples: rows used (a seeded subsample).
        seed: seed of the subsample and of the views.
        unlabeled_groups: optional int group id of each row of `unlabeled_x`
            (e.g. `data.groups[split.unlabeled]`).
        group_names: names of the group ids (index = id); default the ids.

    Example:

    >>> import numpy as np
    >>> diagnostics = HPLDiagnostics(
    ...     "/tmp/tb", np.zeros((10, 3)), lambda x, s: (x, x),
    ...     unlabeled_groups=np.arange(10) % 2, group_names=("even", "odd"))
    >>> diagnostics.group_names
    ('even', 'odd')

    References:
        Heteroscedastic pseudo-labels with bi-level uncertainty learning for
        semi-supervised regression (HPL), NeurIPS 2025, Fig. 4.
    """

    def __init__(
        self,
        log_dir,
        unlabeled_x,
        views,
        unlabeled_y=None,
        num_samples=2048,
        seed=0,
        unlabeled_groups=None,
        group_names=(),
    ):
        super().__init__()
        rows = np.random.default_rng(seed).permutation(len(unlabeled_x))[:num_samples]
        x = tf.constant(np.asarray(unlabeled_x, "float32")[rows])
        self.weak, self.strong = views(x, tf.constant([seed, 1], "int64"))
        self.y = None if unlabeled_y is None else np.asarray(unlabeled_y)[rows]
        self.groups, self.group_names = _checked_groups(
            unlabeled_groups, group_names, len(unlabeled_x)
        )
        if self.groups is not None:
            self.groups = self.groups[rows]
        self.log_dir = log_dir
        self.history = {"epoch": [], "mean_log_variance": []}
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        stats = self.compute(self.model)
        self._record(epoch, stats)
        with self._writer.as_default(step=epoch):
            tf.summary.histogram("hpl/sigma2", stats["sigma2"])
            tf.summary.scalar("hpl/mean_log_variance", np.mean(np.log(stats["sigma2"])))
            if "error" in stats:
                tf.summary.scalar("hpl/spearman_sigma2_vs_error", stats["spearman"])
                tf.summary.image("hpl/sigma2_vs_error", _scatter_png(stats, epoch))
            self._write_groups(stats, epoch)
        self._writer.flush()
        with open(os.path.join(self.log_dir, "history.json"), "w") as file:
            json.dump(self.history, file, indent=1)

    def _record(self, epoch, stats):
        """Appends this epoch's values to `history`."""
        self.history["epoch"].append(epoch + 1)
        self.history["mean_log_variance"].append(
            float(np.mean(np.log(stats["sigma2"])))
        )
        if "spearman" in stats:
            self.history.setdefault("spearman", []).append(stats["spearman"])
        for key in ("group_mean_sigma2", "group_mean_error"):
            if key in stats:
                per_group = self.history.setdefault(key, {})
                for name, value in zip(self.group_names, stats[key], strict=True):
                    per_group.setdefault(name, []).append(float(value))

    def _write_groups(self, stats, epoch):
        if "group_mean_sigma2" not in stats:
            return
        for key in ("group_mean_sigma2", "group_mean_error"):
            for name, value in zip(self.group_names, stats.get(key, ()), strict=False):
                if np.isfinite(value):
                    tf.summary.scalar(f"hpl/{key}/{_tag(name)}", value)
        tf.summary.image(
            "hpl/sigma2_by_group",
            _bars_png(self.group_names, stats["group_mean_sigma2"], epoch),
        )

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def compute(self, model):
        """sigma^2 per sampled row and, with ground truth, errors and Spearman;
        with groups, the per-group means (NaN for a group with no sampled row)."""
        yhat = model.pseudo_labels(self.weak)
        r = model.regressor.standardized(self.strong)
        sigma2 = np.exp(model.log_variance(r, yhat).numpy().ravel())
        stats = {"sigma2": sigma2}
        if self.y is not None:
            y_pred = model.regressor.destandardize(yhat).numpy().ravel()
            stats["error"] = np.abs(y_pred - self.y)
            stats["spearman"] = spearman(sigma2, stats["error"])
        if self.groups is not None:
            count = len(self.group_names)
            stats["group_mean_sigma2"] = group_means(sigma2, self.groups, count)
            if "error" in stats:
                stats["group_mean_error"] = group_means(
                    stats["error"], self.groups, count
                )
        return stats


def group_means(values, groups, num_groups):
    """Mean of `values` per group id `0..num_groups-1` (NaN where a group is empty)."""
    values = np.asarray(values, "float64")
    sums = np.bincount(groups, weights=values, minlength=num_groups)
    counts = np.bincount(groups, minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _checked_groups(groups, names, num_rows):
    """`(groups as int array or None, names)`, checked against the rows."""
    if groups is None:
        return None, tuple(names)
    groups = np.asarray(groups)
    if groups.shape != (num_rows,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(
            f"unlabeled_groups must be {num_rows} integer group ids (one per "
            f"unlabeled row), got dtype {groups.dtype} and shape {groups.shape}."
        )
    if groups.size and groups.min() < 0:
        raise ValueError("unlabeled_groups must be >= 0 (ids index group_names).")
    names = tuple(str(n) for n in names)
    needed = int(groups.max()) + 1 if groups.size else 0
    if not names:
        names = tuple(str(g) for g in range(needed))
    if len(names) < needed:
        raise ValueError(
            f"unlabeled_groups has ids up to {needed - 1} but only "
            f"{len(names)} group_names were given."
        )
    return groups.astype("int64"), names


def _tag(name):
    """A TensorBoard-safe tag part: `"T-shirt/top"` -> `"T-shirt_top"`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def spearman(a, b):
    """Spearman's rank correlation, ties given their average rank; 0 if constant."""
    ranks = [_average_ranks(np.asarray(v, "float64")) for v in (a, b)]
    if min(r.std() for r in ranks) == 0:
        return 0.0
    return float(np.corrcoef(*ranks)[0, 1])


def _average_ranks(values):
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _png(fig):
    """The figure as a `(1, h, w, 4)` uint8 image tensor; closes it."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return tf.expand_dims(tf.image.decode_png(buffer.getvalue(), channels=4), 0)


def _bars_png(names, means, epoch):
    fig, ax = _pyplot().subplots(figsize=(6, 3.5), dpi=80)
    ax.bar(range(len(names)), np.nan_to_num(means))
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("mean sigma^2")
    ax.set_title(f"epoch {epoch + 1}: mean sigma^2 per group")
    return _png(fig)


def _scatter_png(stats, epoch):
    fig, ax = _pyplot().subplots(figsize=(5, 4), dpi=80)
    ax.scatter(stats["error"], stats["sigma2"], s=4, alpha=0.4)
    ax.set_xlabel("|pseudo-label error| (target units)")
    ax.set_ylabel("sigma^2 = exp(g_phi)")
    ax.set_yscale("log")
    ax.set_title(f"epoch {epoch + 1}: Spearman {stats['spearman']:.3f}")
    return _png(fig)
