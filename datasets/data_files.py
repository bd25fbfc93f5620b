"""Shared helpers for data sets that users put on disk by hand.

Where the files live (`resolve_data_dir`), the error raised when they are
missing (`DataNotFoundError`), tables read with a checked header
(`read_checked_table`) and split indices kept consistent when rows are dropped
(`subset_split_rows`).
"""

import csv
import os
import pathlib

import numpy as np
import pandas as pd

DATA_DIR_ENV = "KERAS_SSR_DATA_DIR"
DEFAULT_DATA_ROOT = pathlib.Path("~/keras_ssr_data")
SPLIT_NAMES = ("train", "validation", "test")


class DataNotFoundError(FileNotFoundError):
    """A data set's folder or one of its files is missing or empty."""


def resolve_data_dir(data_dir, folder):
    """Returns the folder that holds one data set.

    Args:
        data_dir: the folder given by the user (`data_dir=` / `--data-dir`), or
            None to use `$KERAS_SSR_DATA_DIR/<folder>` (or
            `~/keras_ssr_data/<folder>` when the variable is unset).
        folder: the data set's folder name under the data root, e.g.
            `"utkface"`.

    Example:

    >>> str(resolve_data_dir("/data/faces", "utkface"))
    '/data/faces'
    """
    if data_dir is not None:
        return pathlib.Path(data_dir).expanduser()
    root = os.environ.get(DATA_DIR_ENV)
    root = pathlib.Path(root) if root else DEFAULT_DATA_ROOT
    return root.expanduser() / folder


def require_files(name, root, relative_paths, layout, instructions):
    """Raises `DataNotFoundError` unless every path exists under `root`.

    Args:
        name: data set name for the message.
        root: the data set folder.
        relative_paths: files or folders that must exist (folders must not be
            empty).
        layout: the expected tree, shown in the message.
        instructions: how to obtain the files, shown in the message.
    """
    root = pathlib.Path(root)
    missing = [p for p in relative_paths if not _present(root / p)]
    if missing:
        raise DataNotFoundError(
            missing_data_message(
                name, root, [root / p for p in missing], layout, instructions
            )
        )


def missing_data_message(name, root, missing, layout, instructions):
    """The text of a `DataNotFoundError`: what is missing, where, how to fix."""
    shown = "\n".join(f"  - {p}" for p in missing)
    return (
        f"{name}: data not found in {root}. Missing or empty:\n{shown}\n"
        f"Expected layout:\n{layout}\n{instructions}\n"
        "Point the loader at the folder with `data_dir=` (CLI: --data-dir), or set "
        f"{DATA_DIR_ENV} to a root holding one folder per data set (utkface/, "
        "imdb_wiki_dir/, agedb_dir/, stsb/). Nothing is downloaded automatically."
    )


def _present(path):
    if path.is_dir():
        return any(path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def read_checked_table(path, required, expected_header, sep=",", quote_none=False):
    """Reads a CSV/TSV file as strings after checking its header.

    Line endings `\\n` and `\\r\\n` are both accepted; column names and cells are
    stripped of surrounding whitespace (so a stray `\\r` never leaks into a
    value).

    Args:
        path: the file.
        required: column names that must be present (any order).
        expected_header: the header the format defines, shown in errors.
        sep: field separator.
        quote_none: read with `quoting=csv.QUOTE_NONE` (GLUE's TSV files: a
            `"` inside a sentence is a plain character).

    Returns:
        A `pandas.DataFrame` of str cells.

    Raises:
        ValueError: naming the file, the expected and the found columns when a
            required column is missing, or the line when a row is malformed.
    """
    path = pathlib.Path(path)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE if quote_none else csv.QUOTE_MINIMAL,
            encoding="utf-8",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: cannot parse the file: {error}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda column: column.str.strip())
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: wrong header. Expected columns {list(expected_header)}, "
            f"found {list(frame.columns)} (missing {missing})."
        )
    return frame


def parse_numbers(path, column, values):
    """Converts a column of str cells to float32, naming bad rows on error."""
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy("float64")
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        shown = ", ".join(f"row {i + 2}: {values[i]!r}" for i in bad[:5])
        raise ValueError(
            f"{path}: column {column!r} must hold numbers; {bad.size} bad value(s) "
            f"({shown}{', ...' if bad.size > 5 else ''}; row 1 is the header)."
        )
    return numbers.astype("float32")


def split_names(path, column, values, mapping):
    """Maps a split column (e.g. TRAIN/VAL/TEST, any case) to train/validation/test.

    Raises:
        ValueError: naming the file, the column and the unknown values.
    """
    lowered = pd.Series(values).str.lower()
    mapped = lowered.map(mapping)
    unknown = sorted(set(lowered[mapped.isna()]))
    if unknown:
        raise ValueError(
            f"{path}: column {column!r} holds unknown split name(s) {unknown}; "
            f"expected one of {sorted(mapping)} (any case)."
        )
    return mapped.to_numpy(dtype=object)


def split_rows_from_names(splits, labeled_order=None):
    """Index arrays per split (and an optional labeling order) from names.

    Args:
        splits: array of `"train"`, `"validation"` or `"test"` per row.
        labeled_order: optional row indices of the training rows in the
            protocol's labeling order.
    """
    splits = np.asarray(splits, dtype=object)
    rows = {k: np.flatnonzero(splits == k) for k in SPLIT_NAMES}
    if labeled_order is not None:
        rows["labeled_order"] = np.asarray(labeled_order, dtype="int64")
    return rows


def subset_split_rows(split_rows, keep):
    """Re-indexes split rows after dropping the rows where `keep` is False.

    Each index array keeps its order (so a labeling order stays the same order
    minus the dropped rows).

    Example:

    >>> rows = {"train": np.array([0, 2, 3]), "test": np.array([1])}
    >>> out = subset_split_rows(rows, np.array([True, True, False, True]))
    >>> out["train"].tolist(), out["test"].tolist()
    ([0, 2], [1])
    """
    if split_rows is None:
        return None
    keep = np.asarray(keep, dtype=bool)
    new_index = np.cumsum(keep) - 1
    out = {}
    for key, rows in split_rows.items():
        rows = np.asarray(rows, dtype="int64")
        out[key] = new_index[rows[keep[rows]]]
    return out
