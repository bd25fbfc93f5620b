"""A folder of images and a CSV of targets: images without a target are unlabeled.

`load("photos/", labels="photos/ages.csv")` takes every image file under the
folder (`.jpg`, `.jpeg`, `.png`, `.bmp`, `.gif`, in sub-folders too, in
sorted path order) and the labels table (a file-name column and a target
column; file names are paths relative to the folder, e.g. `a.jpg` or
`faces/a.jpg`). An image without a row in the table, or with an empty target
cell, is an unlabeled-only row. A row naming a file that is not in the folder,
and an image that cannot be decoded, are reported like the UTKFace loader does
(`datasets.image_files`: one `CorruptImageWarning` with every path and reason
and the file skipped, or `on_corrupt="raise"`).
"""

import pathlib

import numpy as np

from datasets import table_files
from datasets.image_files import image_regression_data

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def load(
    data_dir,
    labels=None,
    image_size=64,
    on_corrupt="skip",
    target=None,
    file_column=None,
    group=None,
    split_column=None,
    name=None,
):
    """Loads an image folder and its labels CSV as a `RegressionData`.

    Args:
        data_dir: the folder of images.
        labels: CSV/TSV/Parquet with a header: a file-name column and a
            target column (plus optional group / split columns).
        image_size: int or `(height, width)` the images are resized to.
        on_corrupt: `"skip"` (report and skip unreadable or missing files) or
            `"raise"`.
        target: the target column (default: the only column besides the
            file, group and split columns).
        file_column: the file-name column (default: the first column).
        group: optional group column of the labels table.
        split_column: optional `train` / `validation` / `test` column of the
            labels table; images without a row are train (unlabeled) rows.
        name: data set name (default: the folder's name).

    Returns:
        A `RegressionData`, modality `"image"`, uint8 pixels
        `(n, height, width, 3)`, `has_target` False for unlabeled images.

    Raises:
        FileNotFoundError: a missing folder or labels file, or no image in it.
        ValueError: a bad labels table: missing column (listing the
            available ones), non-numeric target, duplicate file names, no row
            with a target.
        CorruptImageError: unreadable or missing images with
            `on_corrupt="raise"`.

    Example:

    >>> data = load("photos", labels="photos/ages.csv")  # doctest: +SKIP
    """
    root = pathlib.Path(data_dir).expanduser()
    files = image_files(root)
    if labels is None:
        raise ValueError(
            f"{root}: give labels=FILE.csv (CLI --labels): a table with a file-name "
            "column and a target column; images without a row are unlabeled."
        )
    table = read_labels(labels, target, file_column, group, split_column)
    rows = {f: i for i, f in enumerate(table["files"])}
    present = set(files)
    missing = [f for f in table["files"] if f not in present]
    paths = files + missing
    index = np.array([rows.get(f, -1) for f in paths])
    listed = index >= 0
    has_target = listed & table["has_target"][index]
    table_files.check_target_counts(
        f"{root} with {table['path']}", table["target"], has_target
    )
    splits = None
    if table["split_rows"] is not None:
        splits = np.where(listed, table["splits"][index], "train")
    group_ids, group_names = None, ()
    if table["groups"] is not None:
        cells = np.where(listed, table["groups"][index], "")
        group_names, group_ids = np.unique(cells, return_inverse=True)
    return image_regression_data(
        name or root.name,
        [root / p for p in paths],
        np.where(has_target, table["y"][index], np.nan),
        image_size=image_size,
        on_corrupt=on_corrupt,
        splits=splits,
        target_name=table["target"],
        groups=group_ids,
        group_names=tuple(str(g) for g in group_names),
        has_target=has_target,
    )


def image_files(root):
    """Sorted image paths under `root`, relative to it, with `/` separators.

    Raises:
        FileNotFoundError: when `root` is not a folder or has no image file.
    """
    root = pathlib.Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: give the image folder.")
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise FileNotFoundError(
            f"{root} holds no image file ({', '.join(IMAGE_SUFFIXES)})."
        )
    return files


def read_labels(path, target=None, file_column=None, group=None, split_column=None):
    """Reads a labels table: file names (relative paths) and targets.

    Returns:
        A dict: `path`, `target` (column name), `files` (normalised names),
        `y`, `has_target`, `groups` (group cells or None), `splits` (split
        names per row or None) and `split_rows`.

    Raises:
        ValueError: missing columns, an empty file name, duplicate file
            names (naming them and their lines), non-numeric targets.
    """
    path = pathlib.Path(path).expanduser()
    frame = table_files.read_table(path)
    file_column = file_column or frame.columns[0]
    table_files.require_columns(path, frame, [file_column], "file-name column")
    target = target or _only_target(path, frame, file_column, group, split_column)
    files = np.array([_normalised(f) for f in frame[file_column].fillna("")])
    empty = np.flatnonzero(files == "")
    if empty.size:
        raise ValueError(
            f"{path}: empty file name in column {file_column!r} on line(s) "
            f"{table_files.lines(empty)}."
        )
    _refuse_duplicates(path, file_column, files)
    y, has_target = table_files.targets(path, frame, target)
    rows = table_files.split_rows(path, frame, split_column, has_target)
    splits = None
    if rows is not None:
        splits = np.empty(len(frame), dtype=object)
        for part, index in rows.items():
            splits[index] = part
    groups = None
    if group is not None:
        table_files.require_columns(path, frame, [group], "group column")
        groups = table_files.category_strings(frame[group])
    return {
        "path": path,
        "target": target,
        "files": list(files),
        "y": y,
        "has_target": has_target,
        "groups": groups,
        "splits": splits,
        "split_rows": rows,
    }


def _only_target(path, frame, file_column, group, split_column):
    others = [c for c in frame.columns if c not in (file_column, group, split_column)]
    if len(others) != 1:
        raise ValueError(
            f"{path}: which column is the target? Columns besides the file names "
            f"({file_column!r}): {', '.join(map(repr, others)) or 'none'}. Pass "
            "target= (CLI --target)."
        )
    return others[0]


def _normalised(name):
    name = str(name).strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _refuse_duplicates(path, column, files):
    names, first, counts = np.unique(files, return_index=True, return_counts=True)
    repeated = names[counts > 1]
    if repeated.size:
        shown = "; ".join(
            f"{str(n)!r} on lines {table_files.lines(np.flatnonzero(files == n))}"
            for n in repeated[:5]
        )
        raise ValueError(
            f"{path}: {repeated.size} file name(s) appear more than once in column "
            f"{column!r} ({shown}{'; ...' if repeated.size > 5 else ''}): give each "
            "image one row."
        )
