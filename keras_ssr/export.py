"""SavedModel export in TF Serving's layout, raw features in, target units out."""

import os

import keras
import tensorflow as tf


def export_regressor(regressor, export_dir, inputs):
    """Writes `regressor` as a SavedModel whose signatures take raw inputs.

    The `serving_default` (and `serve`) signature takes a float32 tensor
    `features` of shape `(batch, num_features)` in raw units and returns
    `{"predictions": (batch, 1)}` in target units: the standardisation of inputs
    and targets is inside the graph, so serving needs no Python.

    Inputs are checked in the graph: another dtype is refused by the signature
    ("expected to be a float tensor but is a double tensor": cast to float32),
    and a tensor that is not `(batch, num_features)` fails with an
    `InvalidArgumentError` that names the expected shape. Images and texts
    export the same way with their own input spec (`inputs`): e.g. `images`,
    float32 `(batch, height, width, channels)` pixels in [0, 255], or `texts`,
    strings `(batch,)` / sentence pairs `(batch, 2)`.

    Args:
        regressor: a built `SSRRegressor`.
        export_dir: directory to write, e.g. `savedmodels/run/pseudo_label/1`.
        inputs: the number of raw input features (tabular), or a
            `tf.TensorSpec` of the raw inputs with a `None` batch dimension
            (its name becomes the signature's argument name).

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
    spec = inputs
    if not isinstance(spec, tf.TensorSpec):
        spec = tf.TensorSpec((None, int(inputs)), tf.float32, name="features")
    archive.add_endpoint(
        name="serve",
        fn=lambda x: {
            "predictions": regressor(checked_inputs(x, spec), training=False)
        },
        input_signature=[spec],
    )
    archive.write_out(export_dir, verbose=False)


def checked_inputs(x, spec):
    """`x` after in-graph checks that its shape is `spec`'s (any batch size)."""
    row = tuple(spec.shape[1:])
    if spec.name == "features":
        message = (
            f"features must have shape (batch, {row[0]}): one row per example "
            f"with the {row[0]} raw feature columns in the training order"
        )
    else:
        shown = ", ".join(str(d) for d in row)
        message = f"{spec.name} must have shape (batch, {shown})"
    checks = [tf.debugging.assert_equal(tf.rank(x), len(row) + 1, message=message)]
    if row:
        checks.append(tf.debugging.assert_equal(tf.shape(x)[1:], row, message=message))
    with tf.control_dependencies(checks):
        return tf.identity(x)


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
