"""A user's own table (CSV, TSV or Parquet): rows with an empty target are unlabeled.

`load("houses.csv", target="price")` reads the file, takes the rows whose
target cell is empty as unlabeled-only rows, encodes the feature columns with
a `TableEncoder` (numeric: median imputation + missing indicator; categorical:
one-hot) and returns a `RegressionData` that carries the encoder, so the
exported SavedModel takes the raw columns by name.

Which columns are features: `features` (names, or `"a,b"`), else every
numeric column except the target, group and split columns, plus the
`categorical` ones. A feature column is categorical when it is named in
`categorical` or when some of its cells are not numbers.
"""

import pathlib
import warnings

import numpy as np

from datasets import table_files
from datasets.table_files import MissingValuesWarning
from keras_ssr.data.regression_data import RegressionData
from keras_ssr.data.table_encoder import TableEncoder


def load(
    data_file,
    target,
    features=None,
    group=None,
    split_column=None,
    categorical=None,
    max_categories=50,
    name=None,
):
    """Loads a table as a `RegressionData` with its fitted `TableEncoder`.

    Args:
        data_file: a `.csv`, `.tsv` or `.parquet` file with a header.
        target: the target column; an empty (or NA) cell marks a row without
            a target: an unlabeled-only row (the rows to predict).
        features: feature column names (a sequence or `"a,b,c"`); default:
            every numeric column but the target, group and split columns,
            plus the `categorical` ones.
        group: optional column of group names, for per-group metrics.
        split_column: optional column of `train` / `validation` / `test`
            (any case) per row: the user's own split. Rows without a target
            must be train rows.
        categorical: columns to one-hot encode even if they hold numbers
            (e.g. a zip code); non-numeric feature columns always are.
        max_categories: one-hot columns per categorical column (the most
            frequent values; the rarer ones share an `(other)` column).
        name: data set name (default: the file name without extension).

    Returns:
        A `RegressionData`: `x` the encoded features, `has_target`, the
        `input_encoder`, `groups` and `split_rows` when asked for.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: unreadable file, missing column (listing the available
            ones), non-numeric target cells, no row with a target, a feature
            column without any value, inf in a feature, rows without a target
            outside train in `split_column`.

    Example:

    >>> data = load("houses.csv", target="price")  # doctest: +SKIP
    >>> print(data.describe())  # doctest: +SKIP
    """
    path = pathlib.Path(data_file).expanduser()
    return from_frame(
        table_files.read_table(path),
        target,
        features=features,
        group=group,
        split_column=split_column,
        categorical=categorical,
        max_categories=max_categories,
        name=name or path.stem,
        source=path,
    )


def from_frame(
    frame,
    target,
    features=None,
    group=None,
    split_column=None,
    categorical=None,
    max_categories=50,
    name="table",
    source=None,
):
    """`load` for a `pandas.DataFrame` already read (e.g. by `read_table` or
    from a TFDS data set); `source` names it in messages (default `name`)."""
    path = source or name
    y, has_target = table_files.targets(path, frame, target)
    reserved = {c for c in (target, group, split_column) if c is not None}
    numeric, categories = _feature_columns(path, frame, features, categorical, reserved)
    split_rows = table_files.split_rows(path, frame, split_column, has_target)
    group_ids, group_names = table_files.groups(path, frame, group)
    table_files.check_target_counts(path, target, has_target)
    columns = _column_values(path, frame, numeric, categories)
    fit_rows = np.arange(len(frame)) if split_rows is None else split_rows["train"]
    encoder = TableEncoder.fit(
        {k: v[fit_rows] for k, v in columns.items()},
        numeric=numeric,
        categorical=categories,
        max_categories=max_categories,
        name="table_encoder",
    )
    _report_missing(path, columns, encoder)
    return RegressionData(
        x=encoder.encode(columns),
        y=y,
        feature_names=encoder.feature_names,
        name=name,
        target_name=target,
        groups=group_ids,
        group_names=group_names,
        split_rows=split_rows,
        has_target=has_target,
        input_encoder=encoder,
    )


def _feature_columns(path, frame, features, categorical, reserved):
    """`(numeric, categorical)` feature column names, checked."""
    categorical = table_files.column_list(categorical) or ()
    features = table_files.column_list(features)
    table_files.require_columns(path, frame, categorical, "categorical column")
    if features is None:
        features = [
            c
            for c in frame.columns
            if c not in reserved
            and (c in categorical or table_files.is_numeric(frame[c]))
        ]
    table_files.require_columns(path, frame, features, "feature column")
    clash = [c for c in features if c in reserved]
    if clash:
        raise ValueError(
            f"{path}: {', '.join(map(repr, clash))} cannot be a feature: it is the "
            "target, group or split column."
        )
    if not features:
        raise ValueError(
            f"{path}: no numeric feature column besides the target, group and split "
            f"columns (columns: {', '.join(map(repr, frame.columns))}). Name the "
            "features with --features (text columns are one-hot encoded)."
        )
    numeric = [
        c for c in features if c not in categorical and table_files.is_numeric(frame[c])
    ]
    return numeric, [c for c in features if c not in numeric]


def _column_values(path, frame, numeric, categorical):
    """dict column -> float64 (NaN = missing) or str values; inf refused."""
    columns = {}
    for name in numeric:
        values = table_files.numbers(frame[name])[0]
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            raise ValueError(
                f"{path}: feature column {name!r} holds inf on line(s) "
                f"{table_files.lines(infinite)}: give finite numbers, or leave the "
                "cell empty (missing values are imputed)."
            )
        columns[name] = values
    for name in categorical:
        columns[name] = table_files.category_strings(frame[name])
    return columns


def _report_missing(path, columns, encoder):
    """One `MissingValuesWarning` with the count of missing cells per column."""
    medians = {c["name"]: c["median"] for c in encoder.numeric}
    parts = []
    for name, values in columns.items():
        if name in medians:
            count = int(np.isnan(values).sum())
            how = f"imputed with the median {medians[name]:g}"
        else:
            count = int((values == "").sum())
            how = "one-hot category '(missing)'"
        if count:
            parts.append(f"  {name}: {count} missing ({how})")
    if parts:
        warnings.warn(
            f"{path}: missing feature values (of {len(next(iter(columns.values())))} "
            "rows; numeric columns with missing training values also get a 0/1 "
            "'<column>:missing' indicator):\n" + "\n".join(parts),
            MissingValuesWarning,
            stacklevel=3,
        )
