"""`Teacher`: a fixed predictor whose outputs are cached as PP-SSL pseudo-labels."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_ssr.export import ENCODED_SIGNATURE


class Teacher:
    """A fixed teacher fhat: raw features in, predictions in target units out.

    PP-SSL's teacher never changes during training, so its pseudo-labels are
    computed once, before `fit`, with `standardized_labels`, and travel in the
    training stream as `batch["teacher"] = (yhat_l, yhat_u)` (see
    `keras_ssr.methods.ppssl.PPSSL`). The student never holds the teacher: its
    config, checkpoints and export do not depend on it.

    Build one with a constructor below: `from_linear` (e.g. the oracle of
    `datasets.synthetic_two_group.generate`), `fit_linear` (least squares on a
    disjoint pretrain split, as the paper's California Housing teacher),
    `from_keras` (any trained Keras model, e.g. an `SSRRegressor`) or `load`
    (a SavedModel written by `keras_ssr.export.export_regressor`, or a
    `.keras` file).

    Args:
        predict_fn: callable mapping a float32 array `(batch, d)` of raw
            features to predictions `(batch,)` or `(batch, 1)` in target units.
        batch_size: rows per call of `predict_fn`.

    Example:

    >>> from keras_ssr.data.target_scaler import TargetScaler
    >>> teacher = Teacher.from_linear([2.0, 0.0], intercept=1.0)
    >>> teacher.predict(np.array([[1.0, 5.0]]))
    array([3.])
    >>> teacher.standardized_labels([[1.0, 5.0]], TargetScaler(mean=1.0, std=2.0))
    array([1.], dtype=float32)

    References:
        PP-SSL ("Prediction-Powered Semi-Supervised Learning with Online Power
        Tuning"), Section 2 (teacher-student setting) and Appendix D.1, E.1.
    """

    def __init__(self, predict_fn, batch_size=4096):
        self.predict_fn = predict_fn
        self.batch_size = int(batch_size)

    @classmethod
    def from_linear(cls, weights, intercept=0.0):
        """The linear teacher `x @ weights + intercept` (e.g. the true model)."""
        weights = np.asarray(weights, dtype="float64").reshape(-1)
        intercept = float(intercept)
        return cls(lambda x: np.asarray(x, dtype="float64") @ weights + intercept)

    @classmethod
    def fit_linear(cls, x, y, ridge=0.0):
        """Least-squares linear teacher fitted on a (pretrain) split `(x, y)`.

        Args:
            x: raw features of the pretrain rows, disjoint from the student's
                labeled, unlabeled and evaluation rows.
            y: their targets (target units).
            ridge: L2 penalty on the weights (not the intercept); 0 gives
                ordinary (minimum-norm) least squares.
        """
        x = np.asarray(x, dtype="float64")
        design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        penalty = ridge * np.diag(np.append(np.ones(x.shape[1]), 0.0))
        params = np.linalg.pinv(design.T @ design + penalty) @ (
            design.T @ np.asarray(y, dtype="float64")
        )
        return cls.from_linear(params[:-1], params[-1])

    @classmethod
    def from_keras(cls, model, batch_size=4096):
        """A trained Keras model called in inference mode (target units out)."""
        return cls(lambda x: model(x, training=False), batch_size)

    @classmethod
    def load(cls, path, batch_size=4096):
        """Loads a `.keras` file or an exported SavedModel directory.

        A SavedModel is called through its `serving_default` signature, which
        takes `features` and returns `predictions` (the layout of
        `keras_ssr.export.export_regressor`), or, for a table model with
        named columns, through its signature on the encoded features.
        """
        if str(path).endswith(".keras"):
            # safe_mode: refuse Python code (Lambda layers) in untrusted files.
            model = keras.saving.load_model(path, safe_mode=True)
            return cls.from_keras(model, batch_size)
        if not os.path.isdir(path):
            raise ValueError(f"No SavedModel directory or .keras file at {path!r}.")
        signatures = tf.saved_model.load(path).signatures
        # A table model with named columns also serves the encoded features.
        serve = signatures.get(ENCODED_SIGNATURE, signatures["serving_default"])
        return cls(
            lambda x: serve(features=tf.constant(x, tf.float32))["predictions"],
            batch_size,
        )

    def predict(self, x):
        """Teacher predictions `(n,)` (float64, target units) for raw `x`."""
        x = np.asarray(x, dtype="float32")
        parts = [
            np.asarray(self.predict_fn(x[i : i + self.batch_size]), dtype="float64")
            for i in range(0, len(x), self.batch_size)
        ]
        return np.concatenate(parts).reshape(-1) if parts else np.zeros(0)

    def standardized_labels(self, x, scaler):
        """Predictions in the student's standardised target units, float32.

        Args:
            x: raw features.
            scaler: the student's `TargetScaler` (fitted on its labeled
                targets), so pseudo-labels and labels share one scale.
        """
        return np.asarray(scaler.transform(self.predict(x)), dtype="float32")
