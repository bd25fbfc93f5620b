"""SavedModel export in TF Serving's layout, raw features in, target units out."""

import os

import keras
import tensorflow as tf


def export_regressor(regressor, export_dir, num_features):
    """Writes `regressor` as a SavedModel whose signatures take raw features.

    The `serving_default` (and `serve`) signature takes a float32 tensor
    `features` of shape `(batch, num_features)` in raw units and returns
    `{"predictions": (batch, 1)}` in target units: the standardisation of inputs
    and targets is inside the graph, so serving needs no Python.

    Args:
        regressor: a built `SSRRegressor`.
        export_dir: directory to write, e.g. `savedmodels/run/pseudo_label/1`.
        num_features: number of raw input features.

    Example:

    >>> import numpy as np, tempfile
    >>> from keras_ssr.models.mlp_backbone import MLPBackbone
    >>> from keras_ssr.models.ssr_regressor import SSRRegressor
    >>> model = SSRRegressor(MLPBackbone((4,)))
    >>> _ = model(np.zeros((1, 3), "float32"))
    >>> export_regressor(model, tempfile.mkdtemp() + "/1", 3)
    """
    archive = keras.export.ExportArchive()
    archive.track(regressor)
    spec = tf.TensorSpec((None, num_features), tf.float32, name="features")
    archive.add_endpoint(
        name="serve",
        fn=lambda features: {"predictions": regressor(features, training=False)},
        input_signature=[spec],
    )
    archive.write_out(export_dir, verbose=False)


def next_version_dir(model_dir):
    """`model_dir/<N+1>` where N is the highest integer version already there.

    TF Serving serves the highest numeric version in a model directory, so a
    re-export never overwrites what is being served.
    """
    versions = [
        int(name)
        for name in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
        if name.isdigit()
    ]
    return os.path.join(model_dir, str(max(versions, default=0) + 1))
