"""A user's table of texts (or sentence pairs) and targets: empty target = unlabeled.

`load("reviews.csv", target="stars", text_column="review")` gives a
`RegressionData` of strings `(n,)`; `text_columns=("sentence1", "sentence2")`
gives sentence pairs `(n, 2)` (as STS-B). Rows with an empty target cell are
unlabeled-only rows. The BiLSTM backbone tokenises in its graph, so the
exported SavedModel takes the raw strings (`texts`).
"""

import pathlib
import warnings

from datasets import table_files
from datasets.table_files import MissingValuesWarning
from keras_ssr.data.regression_data import RegressionData


def load(
    data_file,
    target,
    text_column=None,
    text_columns=None,
    group=None,
    split_column=None,
    name=None,
):
    """Loads a CSV/TSV/Parquet file of texts and targets.

    Args:
        data_file: the table (with a header).
        target: the target column; empty cells mark unlabeled rows.
        text_column: the text column. Default: the only non-numeric column
            besides the group and split columns.
        text_columns: two columns (a sequence or `"a,b"`) for sentence pairs,
            instead of `text_column`.
        group: optional group column, for per-group metrics.
        split_column: optional `train` / `validation` / `test` column.
        name: data set name (default: the file name without extension).

    Returns:
        A `RegressionData`, modality `"text"`, `feature_names` the text
        columns. An empty text cell becomes `""` (counted in a
        `MissingValuesWarning`).

    Raises:
        FileNotFoundError, ValueError: as `datasets.table.load` (missing file
        or column, non-numeric target, no row with a target, ...), and for
        an ambiguous or wrong number of text columns.

    Example:

    >>> data = load("reviews.csv", target="stars")  # doctest: +SKIP
    """
    path = pathlib.Path(data_file).expanduser()
    frame = table_files.read_table(path)
    y, has_target = table_files.targets(path, frame, target)
    columns = _text_columns(
        path, frame, text_column, text_columns, target, group, split_column
    )
    split_rows = table_files.split_rows(path, frame, split_column, has_target)
    group_ids, group_names = table_files.groups(path, frame, group)
    table_files.check_target_counts(path, target, has_target)
    texts = frame[list(columns)]
    empty = texts.isna().sum()
    if empty.any():
        warnings.warn(
            f"{path}: empty text cells read as '': "
            + ", ".join(f"{c}: {n}" for c, n in empty.items() if n),
            MissingValuesWarning,
            stacklevel=2,
        )
    x = texts.fillna("").astype(str).to_numpy(dtype=object)
    return RegressionData(
        x=x[:, 0] if len(columns) == 1 else x,
        y=y,
        feature_names=columns,
        name=name or path.stem,
        target_name=target,
        groups=group_ids,
        group_names=group_names,
        modality="text",
        split_rows=split_rows,
        has_target=has_target,
    )


def _text_columns(path, frame, text_column, text_columns, target, group, split_column):
    if text_column is not None and text_columns is not None:
        raise ValueError("Give text_column or text_columns, not both.")
    if text_columns is not None:
        columns = table_files.column_list(text_columns)
        if len(columns) != 2:
            raise ValueError(
                f"text_columns takes two columns (sentence pairs), got {columns}; "
                "use text_column for single texts."
            )
    elif text_column is not None:
        columns = (text_column,)
    else:
        reserved = (target, group, split_column)
        columns = tuple(
            c
            for c in frame.columns
            if c not in reserved and not table_files.is_numeric(frame[c])
        )
        if len(columns) != 1:
            raise ValueError(
                f"{path}: which column holds the texts? Text columns found: "
                f"{', '.join(map(repr, columns)) or 'none'}. Pass text_column= "
                "(CLI --text-column) or text_columns=a,b for sentence pairs."
            )
    table_files.require_columns(path, frame, columns, "text column")
    if target in columns:
        raise ValueError(f"{path}: the target {target!r} cannot be a text column.")
    return columns
