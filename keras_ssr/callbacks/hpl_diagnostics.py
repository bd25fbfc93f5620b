"""`HPLDiagnostics`: TensorBoard panels of HPL's learned pseudo-label variances."""

import io

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
    - `hpl/sigma2_vs_error`: a scatter-plot image of the two (paper Fig. 4).

    Args:
        log_dir: directory for the event files.
        unlabeled_x: raw features of unlabeled rows.
        views: callable `(x, seed) -> (weak, strong)`, as in training.
        unlabeled_y: optional ground truth of `unlabeled_x` (target units).
        num_samples: rows used (a seeded subsample).
        seed: seed of the subsample and of the views.

    Example:

    >>> import numpy as np
    >>> diagnostics = HPLDiagnostics("/tmp/tb", np.zeros((10, 3)), lambda x, s: (x, x))
    """

    def __init__(
        self, log_dir, unlabeled_x, views, unlabeled_y=None, num_samples=2048, seed=0
    ):
        super().__init__()
        rows = np.random.default_rng(seed).permutation(len(unlabeled_x))[:num_samples]
        x = tf.constant(np.asarray(unlabeled_x, "float32")[rows])
        self.weak, self.strong = views(x, tf.constant([seed, 1], "int64"))
        self.y = None if unlabeled_y is None else np.asarray(unlabeled_y)[rows]
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        stats = self.compute(self.model)
        with self._writer.as_default(step=epoch):
            tf.summary.histogram("hpl/sigma2", stats["sigma2"])
            tf.summary.scalar("hpl/mean_log_variance", np.mean(np.log(stats["sigma2"])))
            if "error" in stats:
                tf.summary.scalar("hpl/spearman_sigma2_vs_error", stats["spearman"])
                tf.summary.image("hpl/sigma2_vs_error", _scatter_png(stats, epoch))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def compute(self, model):
        """sigma^2 per sampled row and, with ground truth, errors and Spearman."""
        yhat = model.pseudo_labels(self.weak)
        r = model.regressor.standardized(self.strong)
        sigma2 = np.exp(model.log_variance(r, yhat).numpy().ravel())
        stats = {"sigma2": sigma2}
        if self.y is not None:
            y_pred = model.regressor.destandardize(yhat).numpy().ravel()
            stats["error"] = np.abs(y_pred - self.y)
            stats["spearman"] = spearman(sigma2, stats["error"])
        return stats


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


def _scatter_png(stats, epoch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=80)
    ax.scatter(stats["error"], stats["sigma2"], s=4, alpha=0.4)
    ax.set_xlabel("|pseudo-label error| (target units)")
    ax.set_ylabel("sigma^2 = exp(g_phi)")
    ax.set_yscale("log")
    ax.set_title(f"epoch {epoch + 1}: Spearman {stats['spearman']:.3f}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return tf.expand_dims(tf.image.decode_png(buffer.getvalue(), channels=4), 0)
