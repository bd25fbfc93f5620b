"""`LabeledAnchors`, `PredictsFromAnchors`: the labeled rows a prediction uses."""

import numpy as np
import tensorflow as tf


class LabeledAnchors:
    """Raw inputs and standardised targets of the labeled rows behind a prediction.

    Some methods predict from the labeled training data rather than from the
    weights alone: SSDKL's GP posterior mean conditions on them, TNNR averages
    predicted differences to them. The method keeps them here (set by its
    `prepare(context)` hook from `context.labeled`) and recomputes their
    features with the current weights whenever it predicts, so validation
    during training and `evaluate` after restoring a checkpoint are exact; the
    exported model bakes the features computed with the final weights.

    The rows are held as eager tensors: a traced step captures them as inputs,
    not as graph constants.

    Args:
        x: raw inputs of the labeled rows.
        y: their standardised targets.
        max_rows: keep a random subset of this many rows (`None` or 0: all).
        seed: seed of that subset.

    Example:

    >>> anchors = LabeledAnchors(np.zeros((5, 2)), np.arange(5.0), max_rows=3)
    >>> anchors.x.shape, len(anchors)
    (TensorShape([3, 2]), 3)
    """

    def __init__(self, x, y, max_rows=None, seed=0):
        x, y = np.asarray(x), np.asarray(y, dtype="float32").reshape(-1)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"Labeled anchors need as many targets as rows (at least one), got "
                f"{len(x)} rows and {len(y)} targets."
            )
        if max_rows and max_rows < len(x):
            keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_rows])
            x, y = x[keep], y[keep]
        if x.dtype.kind == "f":
            x = x.astype("float32")
        self.x = tf.constant(x)
        self.y = tf.constant(y)

    def __len__(self):
        return int(self.x.shape[0])

    def features(self, function, batch_size=1024):
        """`function(x)` over the anchors in batches of `batch_size` rows,
        concatenated (eagerly or in a traced step: the count is static), so
        that a large anchor set costs the memory of one evaluation batch."""
        return tf.concat(
            [
                function(self.x[start : start + batch_size])
                for start in range(0, len(self), batch_size)
            ],
            axis=0,
        )


class PredictsFromAnchors:
    """Mixin of the `SSRModel`s whose prediction needs the labeled rows.

    Its `prepare(context)` hook keeps `context.labeled` as the anchors
    (`LabeledAnchors`, at most `num_anchors` rows, 0: all); a library user
    calls `set_anchors(x, y_standardized)` instead. Setting anchors drops the
    traced predict and test functions, which captured the previous ones.
    """

    num_anchors = 0
    anchors = None

    def prepare(self, context):
        """Keeps the run's labeled rows (`context.labeled`) as the anchors."""
        if context.labeled is None:
            raise ValueError(
                f"{type(self).__name__} predicts from the labeled training rows, "
                "but the RunContext has none (RunContext.labeled is None): build "
                "it with labeled=(x, y_standardized)."
            )
        self.set_anchors(*context.labeled)

    def set_anchors(self, x, y_standardized):
        """Sets the labeled rows (raw inputs, standardised targets) the
        prediction uses."""
        self.anchors = LabeledAnchors(x, y_standardized, max_rows=self.num_anchors)
        self.test_function = self.predict_function = None

    def required_anchors(self):
        """The anchors, or a `ValueError` saying how to set them."""
        if self.anchors is None:
            raise ValueError(
                f"{type(self).__name__} predicts from the labeled training rows: "
                "call `model.prepare(context)` (the trainer does) or "
                "`model.set_anchors(x_labeled, y_standardized)` before predicting, "
                "evaluating or exporting."
            )
        return self.anchors
