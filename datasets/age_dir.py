"""IMDB-WIKI-DIR and AgeDB-DIR: age regression from the DIR benchmark tables.

Both come as one CSV at the data root with columns `age,path,split` (the DIR
benchmark; split train/val/test) or `age,path,SPLIT` (HPL's IMDB-WIKI copy);
`path` is relative to the data root (`imdb_crop/NN/...jpg`,
`wiki_crop/NN/...jpg`, `AgeDB/...jpg`). Images are decoded and resized in a
parallel tf.data map (see `datasets.image_files`).

References:
    - Yang et al., "Delving into Deep Imbalanced Regression", ICML 2021
      (IMDB-WIKI-DIR, AgeDB-DIR; github.com/YyzHarry/imbalanced-regression).
    - Sun et al., "Semi-Supervised Regression with Heteroscedastic
      Pseudo-Labels", NeurIPS 2025 (HPL, IMDB-WIKI labeling order).
"""

import numpy as np

from datasets.data_files import (
    parse_numbers,
    read_checked_table,
    require_files,
    resolve_data_dir,
    split_names,
)
from datasets.image_files import image_regression_data

_SPLITS = {"train": "train", "val": "validation", "test": "test"}
PROTOCOLS = ("dir", "hpl")

IMDB_WIKI_LAYOUT = """\
  <data_dir>/                  (default $KERAS_SSR_DATA_DIR/imdb_wiki_dir)
    imdb_wiki.csv              columns age,path,split (or SPLIT)
    imdb_crop/00/...jpg ... imdb_crop/99/...jpg
    wiki_crop/00/...jpg ... wiki_crop/99/...jpg"""

AGEDB_LAYOUT = """\
  <data_dir>/                  (default $KERAS_SSR_DATA_DIR/agedb_dir)
    agedb.csv                  columns age,path,split (or SPLIT)
    AgeDB/0_MariaCallas_35_f.jpg ..."""

IMDB_WIKI_INSTRUCTIONS = """\
Get IMDB-WIKI by hand: imdb_crop.tar and wiki_crop.tar ("faces only") from
https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/, extracted into <data_dir>.
The table: data/imdb_wiki.csv of github.com/YyzHarry/imbalanced-regression
(imdb-wiki-dir), or HPL's imdb_wiki/data (github.com/sxq11/Heteroscedastic-
Pseudo-Labels), copied to <data_dir>/imdb_wiki.csv."""

AGEDB_INSTRUCTIONS = """\
Get AgeDB by hand (request access at https://ibug.doc.ic.ac.uk/resources/agedb/)
and extract it into <data_dir>/AgeDB/. The table: data/agedb.csv of
github.com/YyzHarry/imbalanced-regression (agedb-dir), copied to
<data_dir>/agedb.csv."""


def load_imdb_wiki_dir(
    data_dir=None,
    image_size=64,
    on_corrupt="skip",
    csv_file="imdb_wiki.csv",
    protocol="hpl",
):
    """Loads IMDB-WIKI-DIR as a `RegressionData` of uint8 faces and ages.

    Args:
        data_dir: the data root (see `IMDB_WIKI_LAYOUT`); default
            `$KERAS_SSR_DATA_DIR/imdb_wiki_dir`.
        image_size: int or `(height, width)` of the decoded images.
        on_corrupt: `"skip"` (report and skip unreadable images) or `"raise"`.
        csv_file: the table, relative to `data_dir` (or absolute).
        protocol: `"hpl"` (default): the table's split plus HPL's labeling
            order of the train rows in `split_rows["labeled_order"]`
            (`np.random.default_rng(0).shuffle` of the train rows in CSV order;
            HPL labels the first `int(n_train * ratio)`); `"dir"`: the split
            only (the trainer draws a seeded permutation).

    Returns:
        A `RegressionData` named `"imdb_wiki_dir"` with `split_rows` from the
        table's split column.

    Example:

    >>> data = load_imdb_wiki_dir("/data/imdb_wiki")  # doctest: +SKIP
    """
    return _load_dir_table(
        "imdb_wiki_dir",
        data_dir,
        csv_file,
        image_size,
        on_corrupt,
        protocol,
        IMDB_WIKI_LAYOUT,
        IMDB_WIKI_INSTRUCTIONS,
    )


def load_agedb_dir(
    data_dir=None,
    image_size=64,
    on_corrupt="skip",
    csv_file="agedb.csv",
    protocol="dir",
):
    """Loads AgeDB-DIR as a `RegressionData` of uint8 faces and ages.

    Args:
        data_dir: the data root (see `AGEDB_LAYOUT`); default
            `$KERAS_SSR_DATA_DIR/agedb_dir`.
        image_size: int or `(height, width)` of the decoded images.
        on_corrupt: `"skip"` (report and skip unreadable images) or `"raise"`.
        csv_file: the table, relative to `data_dir` (or absolute).
        protocol: `"dir"` (default): the table's split only (the trainer
            draws a seeded permutation); `"hpl"`: plus the `default_rng(0)`
            labeling order HPL uses on IMDB-WIKI.

    Returns:
        A `RegressionData` named `"agedb_dir"` with `split_rows` from the
        table's split column.

    Example:

    >>> data = load_agedb_dir("/data/agedb")  # doctest: +SKIP
    """
    return _load_dir_table(
        "agedb_dir",
        data_dir,
        csv_file,
        image_size,
        on_corrupt,
        protocol,
        AGEDB_LAYOUT,
        AGEDB_INSTRUCTIONS,
    )


def hpl_dir_labeled_order(num_train):
    """HPL's IMDB-WIKI labeling order: `default_rng(0).shuffle(arange(n))`."""
    indices = np.arange(num_train)
    np.random.default_rng(0).shuffle(indices)
    return indices


def _load_dir_table(
    name,
    data_dir,
    csv_file,
    image_size,
    on_corrupt,
    protocol,
    layout,
    instructions,
):
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Unknown {name} protocol {protocol!r}; use one of {PROTOCOLS}."
        )
    root = resolve_data_dir(data_dir, name)
    require_files(name, root, [csv_file], layout, instructions)
    path = root / csv_file
    frame = read_checked_table(path, ("age", "path"), ("age", "path", "split"))
    split_column = next((c for c in ("split", "SPLIT") if c in frame.columns), None)
    if split_column is None:
        raise ValueError(
            f"{path}: wrong header. Expected columns ['age', 'path', 'split'] (or "
            f"'SPLIT'), found {list(frame.columns)} (missing ['split'])."
        )
    image_folders = sorted({p.replace("\\", "/").split("/")[0] for p in frame["path"]})
    require_files(name, root, image_folders, layout, instructions)
    splits = split_names(path, split_column, frame[split_column], _SPLITS)
    order = None
    if protocol == "hpl":
        train = np.flatnonzero(splits == "train")
        order = train[hpl_dir_labeled_order(len(train))]
    return image_regression_data(
        name,
        [root / p for p in frame["path"]],
        parse_numbers(path, "age", frame["age"]),
        image_size=image_size,
        on_corrupt=on_corrupt,
        splits=splits,
        labeled_order=order,
        target_name="age",
    )
