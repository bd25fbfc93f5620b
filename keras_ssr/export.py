"""SavedModel export in TF Serving's layout, raw features in, target units out."""

import json
import os

import keras
import tensorflow as tf

from keras_ssr.data.regression_data import RegressionData


def export_regressor(regressor, export_dir, inputs):
    """Writes `regressor` as a SavedModel whose signatures take raw inputs.

    The `serving_default` (and `serve`) signature takes a float32 tensor
    `features` of shape `(batch, num_features)` in raw units and returns
    `{"predictions": (batch, 1)}` in target units: the standardisation of inputs
    and targets is inside the graph, so serving needs no Python.

    Inputs are checked in the graph: another dtype is refused by the signature
    ("expected to be a float tensor but is a double tensor": cast to float32),
    a tensor that is not `(batch, num_features)` fails with an
    `InvalidArgumentError` that names the expected shape, and NaN or inf in
    `features` (or `images`) fails with an `InvalidArgumentError` saying so
    (a served model never returns NaN for missing inputs). Images and texts
    export the same way with their own input spec (`inputs`): e.g. `images`,
    float32 `(batch, height, width, channels)` pixels in [0, 255], or `texts`,
    strings `(batch,)` / sentence pairs `(batch, 2)`.

    Given the `RegressionData` the regressor was trained on, the spec follows
    from its modality, and data with an `input_encoder` (a user's table, see
    `datasets.table`) export the encoder in front of the regressor: the
    signature then takes one `(batch,)` input per raw column, by name (float32
    for numeric columns, where NaN means missing and is imputed as in
    training; strings for categorical ones).
    A model with an encoder also has the signature `serve_features`, which
    takes the encoded float32 `features` (`RegressionData.x`), e.g. for a
    teacher called on encoded rows. Every export writes
    `assets.extra/keras_ssr.json` (`read_metadata`): the inputs, the
    modality, the target and the column names, which is what
    `python -m trainers.predict` needs to read a file for this model.

    Args:
        regressor: a built `SSRRegressor`.
        export_dir: directory to write, e.g. `savedmodels/run/pseudo_label/1`.
        inputs: the `RegressionData` the regressor was trained on (preferred),
            the number of raw input features (tabular), or a `tf.TensorSpec`
            of the raw inputs with a `None` batch dimension (its name becomes
            the signature's argument name).

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
    data = inputs if isinstance(inputs, RegressionData) else None
    spec = input_signature(data) if data is not None else inputs
    if not isinstance(spec, (tf.TensorSpec, dict)):
        spec = tf.TensorSpec((None, int(inputs)), tf.float32, name="features")
    encoder = getattr(data, "input_encoder", None)
    if encoder is not None:
        archive.track(encoder)

        def serve(columns):
            return {"predictions": regressor(encoder(columns), training=False)}

    else:

        def serve(x):
            return {"predictions": regressor(checked_inputs(x, spec), training=False)}

    archive.add_endpoint(name="serve", fn=serve, input_signature=[spec])
    if encoder is not None:
        features = tf.TensorSpec((None, encoder.output_dim), tf.float32, "features")
        archive.add_endpoint(
            name=ENCODED_SIGNATURE,
            fn=lambda x: {
                "predictions": regressor(checked_inputs(x, features), training=False)
            },
            input_signature=[features],
        )
    archive.write_out(export_dir, verbose=False)
    write_metadata(export_dir, export_metadata(spec, data))


def input_signature(data):
    """The SavedModel input signature for raw inputs of a `RegressionData`.

    `features` float32 `(None, d)` (tabular), `images` float32
    `(None, h, w, c)`, `texts` string `(None,)` or `(None, 2)`; with an
    `input_encoder`, its dict of named `(None,)` column inputs.
    """
    if data.input_encoder is not None:
        return data.input_encoder.input_specs()
    from keras_ssr.modalities import get_modality

    return get_modality(data.modality).input_spec(data)


def checked_inputs(x, spec):
    """`x` after in-graph checks: `spec`'s shape (any batch size) and, for
    float inputs, no NaN or inf."""
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
        x = tf.identity(x)
    if spec.dtype.is_floating:
        x = tf.debugging.assert_all_finite(
            x,
            message=f"{spec.name} hold NaN or inf: the model needs finite values "
            "(impute or drop missing values before calling it)",
        )
    return x


METADATA_FILE = os.path.join("assets.extra", "keras_ssr.json")
# The signature of a table model that takes the encoded `features` matrix.
ENCODED_SIGNATURE = "serve_features"


def export_metadata(spec, data=None):
    """What a reader of inputs needs to know about an exported model.

    A dict with `format` (1), `signature`, `output`, `inputs` (`"features"`,
    `"images"`, `"texts"` or `"columns"`), the input `shape` and, given the
    training `RegressionData`: `dataset`, `modality`, `target`,
    `feature_names`, and for `"columns"` the raw `columns` (name, signature
    key, kind `"numeric"` / `"categorical"`).
    """
    metadata = {"format": 1, "signature": "serving_default", "output": "predictions"}
    if isinstance(spec, dict):
        metadata["inputs"] = "columns"
    else:
        metadata["inputs"] = spec.name
        metadata["shape"] = [None if d is None else int(d) for d in spec.shape]
    if data is None:
        return metadata
    metadata.update(
        dataset=data.name,
        modality=data.modality,
        target=data.target_name,
        feature_names=list(data.feature_names),
    )
    encoder = data.input_encoder
    if encoder is not None:
        metadata["encoded_signature"] = ENCODED_SIGNATURE
        metadata["columns"] = [
            {"name": c["name"], "key": c["key"], "kind": kind}
            for kind, group in (
                ("numeric", encoder.numeric),
                ("categorical", encoder.categorical),
            )
            for c in group
        ]
    return metadata


def write_metadata(export_dir, metadata):
    """Writes `metadata` to `<export_dir>/assets.extra/keras_ssr.json` (a
    folder TF Serving leaves alone)."""
    path = os.path.join(export_dir, METADATA_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle, indent=2)


def read_metadata(export_dir):
    """The metadata `export_regressor` wrote beside a SavedModel.

    Raises:
        FileNotFoundError: when `export_dir` is not a SavedModel, or has no
            keras-ssr metadata (exported by other code).
    """
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"{export_dir} is not a SavedModel folder (no saved_model.pb): give "
            "savedmodels/<run>/<method>/<version>."
        )
    path = os.path.join(export_dir, METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: this SavedModel was not exported by "
            "keras_ssr.export.export_regressor; re-export it with the training "
            "data: export_regressor(regressor, export_dir, data)."
        )
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


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
