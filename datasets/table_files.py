"""Reading a user's own table (CSV, TSV, Parquet) with checked columns.

Shared by the loaders of users' own data (`table`, `image_folder`,
`text_csv`) and by `trainers.predict`: one reader, one notion of a missing
cell, one way to parse targets, groups and split columns, and messages that
name the file, the column and the lines (line 1 is a CSV's header, so data row
`i` is line `i + 2`).
"""

import csv
import pathlib
import warnings

import numpy as np
import pandas as pd

from keras_ssr.data.split import shown_rows

PARQUET_SUFFIXES = (".parquet", ".pq")
TSV_SUFFIXES = (".tsv", ".tab")
SPLIT_VALUES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}


class AllRowsLabeledWarning(UserWarning):
    """Every row has a target: no row is unlabeled."""


class MissingValuesWarning(UserWarning):
    """Missing input values were imputed (or replaced by an empty text)."""


def read_table(path):
    """Reads a CSV/TSV (as text cells) or Parquet file into a `DataFrame`.

    CSV/TSV cells are kept as stripped strings, with pandas' missing-value
    markers (an empty cell, `NA`, `NaN`, `null`, ...) read as missing; Parquet
    columns keep their numeric types and other columns become strings.

    Raises:
        FileNotFoundError: when `path` does not exist.
        ValueError: when the file cannot be read (naming it and why) or its
            header repeats a column name.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        where = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{path} {where}: give a CSV, TSV or Parquet file.")
    kind = "Parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "CSV"
    try:
        frame = _read_parquet(path) if kind == "Parquet" else _read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else error
        raise ValueError(
            f"{path}: cannot read the file as {kind}: {reason}. Give a UTF-8 CSV "
            "(.csv, .tsv) with a header line, or a Parquet file (.parquet)."
        ) from error
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise ValueError(
            f"{path}: the header repeats column name(s) {duplicated}: rename them "
            "so every column has its own name."
        )
    return frame


def _read_csv(path):
    sep = "\t" if path.suffix.lower() in TSV_SUFFIXES else ","
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle, delimiter=sep), None)
    if not header:
        raise ValueError("the file is empty (no header line)")
    header = [h.strip() for h in header]
    frame = pd.read_csv(
        path, sep=sep, dtype=str, encoding="utf-8-sig", skipinitialspace=True
    )
    frame.columns = header if len(header) == frame.shape[1] else frame.columns
    frame = frame.apply(lambda column: column.str.strip())
    return frame.mask(frame == "")  # a blank cell is missing too


def _read_parquet(path):
    frame = pd.read_parquet(path)
    frame.columns = [str(c) for c in frame.columns]
    for name in frame.columns:
        if not _is_numeric_dtype(frame[name]):
            column = frame[name]
            frame[name] = column.where(column.isna(), column.astype(str))
    return frame


def _is_numeric_dtype(series):
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def require_columns(path, frame, names, what="column"):
    """Raises `ValueError` naming the missing columns and the available ones."""
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: no {what} named {', '.join(map(repr, missing))}. Available "
            f"columns: {', '.join(map(repr, frame.columns))}."
        )


def column_list(value):
    """`"a,b"`, `["a", "b"]` or `None` -> a tuple of names (or `None`)."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def numbers(series):
    """`(values, bad)`: float64 values (NaN where missing) and a bool mask of
    the present cells that are not numbers."""
    if _is_numeric_dtype(series):
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        return values.to_numpy(), np.zeros(len(series), bool)
    values = pd.to_numeric(series, errors="coerce").to_numpy("float64")
    return values, (series.notna() & np.isnan(values)).to_numpy()


def is_numeric(series):
    """True when every present cell of `series` is a number."""
    return not numbers(series)[1].any()


def targets(path, frame, target):
    """`(y, has_target)`: float32 targets (NaN where the cell is empty).

    Raises:
        ValueError: for a missing column (listing the available ones) or cells
            that are present but not numbers (naming the lines and values).
    """
    require_columns(path, frame, [target], "target column")
    values, bad = numbers(frame[target])
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"line {r + 2}: {frame[target].iloc[r]!r}" for r in rows[:5])
        raise ValueError(
            f"{path}: the target column {target!r} must hold numbers (or be empty "
            f"for rows without a target); {len(rows)} cell(s) are not numbers "
            f"({shown}{', ...' if len(rows) > 5 else ''})."
        )
    has_target = ~np.isnan(values)
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        raise ValueError(
            f"{path}: the target column {target!r} holds inf on line(s) "
            f"{lines(infinite)}: give finite numbers, or leave the cell empty."
        )
    return values.astype("float32"), has_target


def category_strings(series):
    """Cells as strings for categorical use, `""` where missing; integral
    numbers print without `.0`, so CSV text and Parquet numbers agree."""
    if _is_numeric_dtype(series):
        values = pd.to_numeric(series, errors="coerce").to_numpy("float64")
        return np.array(
            [
                "" if np.isnan(v) else (f"{v:.0f}" if v.is_integer() else repr(v))
                for v in values
            ],
            dtype=object,
        )
    return series.fillna("").astype(str).to_numpy(dtype=object)


def groups(path, frame, group):
    """`(ids, names)` of a group column (an empty cell is group `""`)."""
    if group is None:
        return None, ()
    require_columns(path, frame, [group], "group column")
    names, ids = np.unique(category_strings(frame[group]), return_inverse=True)
    return ids.astype("int32"), tuple(str(n) for n in names)


def split_rows(path, frame, split_column, has_target):
    """`{"train", "validation", "test"}` row indices from a user's split column.

    Values `train` / `validation` / `test` (any case; also `val`, `valid`,
    `dev`, `training`). Rows without a target must be train rows.

    Raises:
        ValueError: for a missing column, unknown or empty values, or rows
            without a target outside train (naming the lines).
    """
    if split_column is None:
        return None
    require_columns(path, frame, [split_column], "split column")
    cells = frame[split_column].fillna("").astype(str).str.strip().str.lower()
    names = cells.map(SPLIT_VALUES)
    unknown = names.isna().to_numpy()
    if unknown.any():
        rows = np.flatnonzero(unknown)
        values = sorted(set(cells.iloc[rows]))
        raise ValueError(
            f"{path}: the split column {split_column!r} holds {values} on line(s) "
            f"{lines(rows)}; use train, validation or test (any case) in every row."
        )
    names = names.to_numpy(dtype=object)
    for part in ("validation", "test"):
        bad = np.flatnonzero((names == part) & ~has_target)
        if bad.size:
            raise ValueError(
                f"{path}: {bad.size} row(s) have no target but are {part} rows "
                f"(column {split_column!r}), line(s) {lines(bad)}. Rows without a "
                "target can only be training rows (unlabeled): mark them train or "
                "give them a target."
            )
    return {k: np.flatnonzero(names == k) for k in ("train", "validation", "test")}


def check_target_counts(source, target, has_target):
    """Refuses data without any target; warns (with the counts) when every
    row has one, since semi-supervised methods then have no unlabeled row."""
    count, total = int(has_target.sum()), len(has_target)
    if count == 0:
        raise ValueError(
            f"{source}: none of the {total} rows has a target in {target!r}: at "
            "least one labeled row is needed (leave the target empty only for "
            "the rows to predict)."
        )
    if count == total:
        warnings.warn(
            f"{source}: all {total} rows have a target in {target!r}, so no row is "
            "unlabeled. The semi-supervised methods need unlabeled rows: hide some "
            "labels with --label-ratio / --num-labels (a benchmark), add rows with "
            "an empty target, or train 'supervised'.",
            AllRowsLabeledWarning,
            stacklevel=3,
        )


def lines(rows, limit=10):
    """File line numbers (header = line 1) of data rows, for messages."""
    return shown_rows(np.asarray(rows) + 2, limit)
