"""`TableEncoder`: raw named table columns -> one float32 feature matrix, in graph."""

import re

import keras
import numpy as np
import tensorflow as tf

OTHER = "(other)"
MISSING = "(missing)"


@keras.saving.register_keras_serializable(package="keras_ssr")
class TableEncoder(keras.layers.Layer):
    """Encodes a dict of raw table columns into the features a regressor takes.

    Numeric columns: a missing value (NaN) is imputed with the column's median
    over the fitting rows, and a column that had missing values there also gets
    a 0/1 missing-indicator column (scikit-learn's
    `SimpleImputer(strategy="median", add_indicator=True)`); inf is refused
    with an error naming the column. Categorical columns (strings) are one-hot
    encoded over a vocabulary from the fitting rows (the `max_categories` most
    frequent values; an empty cell is the category `""`); rarer values and
    values never seen share an `(other)` column when some fitting row was
    rare, else they encode as all zeros. Scaling is not done here: the
    `SSRRegressor` standardises the encoded features.

    The layer runs in the SavedModel, so a served model takes the raw columns
    by name (TF Serving's `{"instances": [{"column": value, ...}]}`). Column
    names that are not valid signature names are sanitised to `key`s
    (`input_keys`).

    Args:
        numeric: list of dicts `{"name", "key", "median", "indicator"}`.
        categorical: list of dicts `{"name", "key", "vocabulary", "other"}`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> encoder = TableEncoder.fit(
    ...     {"rooms": np.array([1.0, np.nan, 3.0]),
    ...      "city": np.array(["a", "b", "a"], dtype=object)},
    ...     numeric=["rooms"], categorical=["city"])
    >>> encoder.feature_names
    ('rooms', 'rooms:missing', 'city=a', 'city=b')
    >>> encoder.encode({"rooms": np.array([np.nan]), "city": np.array(["b"])})
    array([[2., 1., 0., 1.]], dtype=float32)

    References:
        - scikit-learn's `SimpleImputer` / `MissingIndicator` and
          `OneHotEncoder(handle_unknown="infrequent_if_exist")`: the same
          imputation, indicator and rare-category rules.
    """

    def __init__(self, numeric=(), categorical=(), **kwargs):
        super().__init__(**kwargs)
        self.numeric = [dict(c) for c in numeric]
        self.categorical = [dict(c) for c in categorical]
        if not self.numeric and not self.categorical:
            raise ValueError("TableEncoder needs at least one column.")

    @classmethod
    def fit(cls, columns, numeric=(), categorical=(), max_categories=50, **kwargs):
        """An encoder fitted on the rows of `columns`.

        Args:
            columns: dict column name -> 1-D array of the fitting rows: floats
                (NaN = missing) for `numeric`, strings for `categorical`.
            numeric: names of the numeric columns, in output order.
            categorical: names of the categorical columns, after the numeric.
            max_categories: most frequent values kept per categorical column.
            **kwargs: passed to the constructor (e.g. `name`).

        Raises:
            ValueError: for a numeric column without any value, naming it.
        """
        keys = signature_keys(list(numeric) + list(categorical))
        numeric_specs = []
        for name in numeric:
            values = np.asarray(columns[name], dtype="float64")
            missing = np.isnan(values)
            if missing.all():
                raise ValueError(
                    f"column {name!r} has no value in any of the {len(values)} "
                    "fitting rows: drop it from the features."
                )
            numeric_specs.append(
                {
                    "name": name,
                    "key": keys[name],
                    "median": float(np.median(values[~missing])),
                    "indicator": bool(missing.any()),
                }
            )
        categorical_specs = []
        for name in categorical:
            values, counts = np.unique(
                np.asarray(columns[name]).astype(str), return_counts=True
            )
            order = np.lexsort((values, -counts))  # most frequent first, then A-Z
            kept = [str(v) for v in values[order][:max_categories]]
            categorical_specs.append(
                {
                    "name": name,
                    "key": keys[name],
                    "vocabulary": kept,
                    "other": len(values) > len(kept),
                }
            )
        return cls(numeric_specs, categorical_specs, **kwargs)

    @property
    def input_keys(self):
        """Column name -> signature input key (sanitised name)."""
        return {c["name"]: c["key"] for c in self.numeric + self.categorical}

    @property
    def feature_names(self):
        """Names of the encoded columns, e.g. `age`, `age:missing`, `city=Paris`."""
        names = []
        for column in self.numeric:
            names.append(column["name"])
            if column["indicator"]:
                names.append(f"{column['name']}:missing")
        for column in self.categorical:
            names += [
                f"{column['name']}={v if v else MISSING}" for v in column["vocabulary"]
            ]
            if column["other"]:
                names.append(f"{column['name']}={OTHER}")
        return tuple(names)

    @property
    def output_dim(self):
        return len(self.feature_names)

    def input_specs(self):
        """Signature key -> `tf.TensorSpec((None,), float32 | string)`."""
        specs = {
            c["key"]: tf.TensorSpec((None,), tf.float32, c["key"]) for c in self.numeric
        }
        for column in self.categorical:
            specs[column["key"]] = tf.TensorSpec((None,), tf.string, column["key"])
        return specs

    def call(self, inputs):
        """`inputs`: dict signature key -> `(batch,)` tensor."""
        parts = [self._numeric(inputs[c["key"]], c) for c in self.numeric]
        parts += [self._categorical(inputs[c["key"]], c) for c in self.categorical]
        batch = [tf.shape(p)[0] for p in parts]
        checks = [
            tf.debugging.assert_equal(
                size, batch[0], message="every column must have the same number of rows"
            )
            for size in batch[1:]
        ]
        with tf.control_dependencies(checks):
            return tf.concat(parts, axis=1)

    def _numeric(self, values, column):
        values = tf.cast(values, tf.float32)
        missing = tf.math.is_nan(values)
        finite = tf.debugging.assert_all_finite(
            tf.where(missing, 0.0, values),
            message=f"column {column['name']!r} holds inf: give finite numbers "
            "(NaN means missing and is imputed)",
        )
        imputed = tf.where(missing, tf.constant(column["median"], tf.float32), finite)
        parts = [imputed[:, None]]
        if column["indicator"]:
            parts.append(tf.cast(missing, tf.float32)[:, None])
        return tf.concat(parts, axis=1)

    def _categorical(self, values, column):
        vocabulary = tf.constant(column["vocabulary"], tf.string)
        one_hot = tf.cast(tf.equal(values[:, None], vocabulary[None, :]), tf.float32)
        if not column["other"]:
            return one_hot
        other = 1.0 - tf.reduce_sum(one_hot, axis=1, keepdims=True)
        return tf.concat([one_hot, other], axis=1)

    def encode(self, columns, batch_size=8192):
        """NumPy features of `columns` (dict column name -> 1-D array), by this
        very layer, so training rows and served inputs are encoded alike."""
        inputs = self.as_inputs(columns)
        size = len(next(iter(inputs.values())))
        batches = [
            self({k: v[start : start + batch_size] for k, v in inputs.items()}).numpy()
            for start in range(0, size, batch_size)
        ]
        if not batches:
            return np.zeros((0, self.output_dim), "float32")
        return np.concatenate(batches)

    def as_inputs(self, columns):
        """dict column name -> values as the dict of signature inputs."""
        inputs = {}
        for column in self.numeric:
            inputs[column["key"]] = np.asarray(columns[column["name"]], "float32")
        for column in self.categorical:
            inputs[column["key"]] = np.asarray(columns[column["name"]]).astype(str)
        return {k: tf.constant(v) for k, v in inputs.items()}

    def compute_output_shape(self, input_shape):
        return (None, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(numeric=self.numeric, categorical=self.categorical)
        return config


def signature_keys(names):
    """Column name -> a unique SavedModel signature key (`[A-Za-z0-9_]`, a
    letter first), e.g. `"sale price"` -> `"sale_price"`, `"2nd"` -> `"c_2nd"`.

    Example:

    >>> signature_keys(["a b", "a_b", "x"])
    {'a b': 'a_b', 'a_b': 'a_b_2', 'x': 'x'}
    """
    keys, used = {}, set()
    for name in names:
        key = re.sub(r"[^A-Za-z0-9_]", "_", str(name)) or "column"
        if not key[0].isalpha():
            key = "c_" + key
        base, count = key, 1
        while key in used:
            count += 1
            key = f"{base}_{count}"
        keys[name] = key
        used.add(key)
    return keys
