"""Name -> loader registry of the data sets keras-ssr reads.

Data that ships with keras-ssr (offline), loaders for data users put on disk
by hand (UTKFace, IMDB-WIKI-DIR, AgeDB-DIR, STS-B; see each module's layout)
and loaders for a user's own data: `csv` (a table, CSV or Parquet),
`image_folder`, `text_csv` and `tfds:<name>` (any TFDS data set prepared on
disk).
"""

import functools

from datasets import (
    age_dir,
    california_housing,
    image_folder,
    rotated_mnist,
    stsb,
    synthetic_two_group,
    table,
    text_csv,
    tfds_data,
    utkface,
    vader_sentiment,
)

TFDS_PREFIX = "tfds:"

DATASETS = {
    "agedb_dir": age_dir.load_agedb_dir,
    "california_housing": california_housing.load,
    "csv": table.load,
    "image_folder": image_folder.load,
    "imdb_wiki_dir": age_dir.load_imdb_wiki_dir,
    "rotated_mnist": rotated_mnist.load,
    "stsb": stsb.load,
    "synthetic_two_group": synthetic_two_group.load,
    "text_csv": text_csv.load,
    "utkface": utkface.load,
    "vader_sentiment": vader_sentiment.load,
}


def dataset_names():
    """Returns the registered data set names, sorted."""
    return tuple(sorted(DATASETS))


def get_loader(name):
    """The loader function of a data set name (`tfds:<name>` included).

    Raises:
        ValueError: if `name` is not registered (the message lists the names).
    """
    if name.startswith(TFDS_PREFIX):
        return functools.partial(tfds_data.load, name[len(TFDS_PREFIX) :])
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: {', '.join(dataset_names())}, "
            f"or {TFDS_PREFIX}<name> for a TFDS data set prepared on disk."
        )
    return DATASETS[name]


def load_dataset(name, **kwargs):
    """Loads a registered data set by name.

    Args:
        name: one of `dataset_names()`, or `tfds:<name>` (e.g.
            `tfds:my_table/default:1.0.0`) for a prepared TFDS data set.
        **kwargs: passed to that data set's `load` function.

    Returns:
        A `RegressionData`.

    Raises:
        ValueError: if `name` is not registered (the message lists the names).

    Example:

    >>> data = load_dataset("synthetic_two_group", bias=0.5, seed=0)
    >>> data.name
    'synthetic_two_group'
    """
    return get_loader(name)(**kwargs)
