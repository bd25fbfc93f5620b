"""Name -> loader registry of the data sets keras-ssr reads.

Data that ships with keras-ssr (offline), loaders for data users put on disk
by hand (UTKFace, IMDB-WIKI-DIR, AgeDB-DIR, STS-B; see each module's layout)
and loaders for a user's own data: `csv` (a table, CSV or Parquet),
`image_folder`, `text_csv` and `tfds:<name>` (any TFDS data set prepared on
disk). Each entry says which loader arguments a command line may set
(`flags`), the modality of its inputs, its default label ratio and, for image
data whose target some augmentations would change, the label-preserving view
settings (`views`).
"""

import dataclasses
import functools
from collections.abc import Callable

from datasets import (
    age_dir,
    california_housing,
    image_folder,
    rotated_fashion_mnist,
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


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A registered data set.

    Args:
        load: the loader, returning a `RegressionData`.
        flags: loader keyword arguments a command line may set (e.g.
            `data_dir`); others are refused for this data set.
        views: `ImageViews` settings that keep the target (e.g. no rotation
            for an angle target); `{}` for none.
        modality: the modality of its inputs, known before loading (e.g. for
            presets whose values depend on it); `None` when only the data
            tell (TFDS).
        default_label_ratio: the label ratio when neither a ratio nor a count
            is given: 0.05 for benchmark data (every row has a target; 5 % are
            labeled), `None` for a user's own data (every row with a target is
            labeled).
        required: the `flags` that must be given.

    Example:

    >>> DATASETS["rotated_mnist"].views["flip"]
    False
    """

    load: Callable
    flags: tuple = ()
    views: dict = dataclasses.field(default_factory=dict)
    modality: str | None = "tabular"
    default_label_ratio: float | None = 0.05
    required: tuple = ()


# Loader arguments of the on-disk image datasets.
_IMAGE_FILES = ("data_dir", "protocol", "image_size", "on_corrupt")
# Loader arguments shared by a user's own data sets.
_OWN = ("target", "group", "split_column")


def _own(load, flags, modality, required):
    return DatasetEntry(
        load,
        _OWN + flags,
        modality=modality,
        default_label_ratio=None,
        required=required,
    )


DATASETS = {
    "agedb_dir": DatasetEntry(age_dir.load_agedb_dir, _IMAGE_FILES, modality="image"),
    "california_housing": DatasetEntry(california_housing.load),
    "csv": _own(
        table.load,
        ("data_file", "features", "categorical", "max_categories"),
        "tabular",
        ("data_file", "target"),
    ),
    "image_folder": _own(
        image_folder.load,
        ("data_dir", "labels", "image_size", "on_corrupt", "file_column"),
        "image",
        ("data_dir",),
    ),
    "imdb_wiki_dir": DatasetEntry(
        age_dir.load_imdb_wiki_dir, _IMAGE_FILES, modality="image"
    ),
    "rotated_fashion_mnist": DatasetEntry(
        rotated_fashion_mnist.load,
        ("data_dir",),
        views=rotated_fashion_mnist.VIEWS_CONFIG,
        modality="image",
    ),
    "rotated_mnist": DatasetEntry(
        rotated_mnist.load, views=rotated_mnist.VIEWS_CONFIG, modality="image"
    ),
    "stsb": DatasetEntry(stsb.load, ("data_dir", "protocol"), modality="text"),
    "synthetic_two_group": DatasetEntry(synthetic_two_group.load),
    "text_csv": _own(
        text_csv.load,
        ("data_file", "text_column", "text_columns"),
        "text",
        ("data_file", "target"),
    ),
    "utkface": DatasetEntry(utkface.load, _IMAGE_FILES, modality="image"),
    "vader_sentiment": DatasetEntry(vader_sentiment.load, modality="text"),
}


def dataset_names():
    """Returns the registered data set names, sorted."""
    return tuple(sorted(DATASETS))


def get_dataset(name):
    """The `DatasetEntry` of a data set name (`tfds:<name>` included).

    Raises:
        ValueError: if `name` is not registered (the message lists the names).
    """
    if name.startswith(TFDS_PREFIX):
        return DatasetEntry(
            functools.partial(tfds_data.load, name[len(TFDS_PREFIX) :]),
            ("target", "data_dir", "features", "image_size", "categorical")
            + ("max_categories",),
            modality=None,
            default_label_ratio=None,
            required=("target",),
        )
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: {', '.join(dataset_names())}, "
            f"or {TFDS_PREFIX}<name> for a TFDS data set prepared on disk."
        )
    return DATASETS[name]


def get_loader(name):
    """The loader function of a data set name (`tfds:<name>` included)."""
    return get_dataset(name).load


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
