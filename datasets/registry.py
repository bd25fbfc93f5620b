"""Name -> loader registry of the data sets keras-ssr reads.

Data that ships with keras-ssr (offline) and loaders for data users put on disk
by hand (UTKFace, IMDB-WIKI-DIR, AgeDB-DIR, STS-B; see each module's layout).
Each entry says which loader arguments a command line may set (`flags`) and,
for image data whose target some augmentations would change, the
label-preserving view settings (`views`).
"""

import dataclasses
from collections.abc import Callable

from datasets import (
    age_dir,
    california_housing,
    rotated_mnist,
    stsb,
    synthetic_two_group,
    utkface,
    vader_sentiment,
)

# Loader arguments of the on-disk image datasets.
_IMAGE_FILES = ("data_dir", "protocol", "image_size", "on_corrupt")


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """A registered data set.

    Args:
        load: the loader, returning a `RegressionData`.
        flags: loader keyword arguments a command line may set (e.g.
            `data_dir`); others are refused for this data set.
        views: `ImageViews` settings that keep the target (e.g. no rotation
            for an angle target); `{}` for none.
        modality: the modality of its inputs (known before loading, e.g. for
            presets whose values depend on it).

    Example:

    >>> DATASETS["rotated_mnist"].views["flip"]
    False
    """

    load: Callable
    flags: tuple = ()
    views: dict = dataclasses.field(default_factory=dict)
    modality: str = "tabular"


DATASETS = {
    "agedb_dir": DatasetEntry(age_dir.load_agedb_dir, _IMAGE_FILES, modality="image"),
    "california_housing": DatasetEntry(california_housing.load),
    "imdb_wiki_dir": DatasetEntry(
        age_dir.load_imdb_wiki_dir, _IMAGE_FILES, modality="image"
    ),
    "rotated_mnist": DatasetEntry(
        rotated_mnist.load, views=rotated_mnist.VIEWS_CONFIG, modality="image"
    ),
    "stsb": DatasetEntry(stsb.load, ("data_dir", "protocol"), modality="text"),
    "synthetic_two_group": DatasetEntry(synthetic_two_group.load),
    "utkface": DatasetEntry(utkface.load, _IMAGE_FILES, modality="image"),
    "vader_sentiment": DatasetEntry(vader_sentiment.load, modality="text"),
}


def dataset_names():
    """Returns the registered data set names, sorted."""
    return tuple(sorted(DATASETS))


def get_dataset(name):
    """The `DatasetEntry` registered under `name`.

    Raises:
        ValueError: if `name` is not registered (the message lists the names).
    """
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: {', '.join(dataset_names())}."
        )
    return DATASETS[name]


def load_dataset(name, **kwargs):
    """Loads a registered data set by name.

    Args:
        name: one of `dataset_names()`.
        **kwargs: passed to that data set's loader.

    Returns:
        A `RegressionData`.

    Raises:
        ValueError: if `name` is not registered (the message lists the names).

    Example:

    >>> data = load_dataset("synthetic_two_group", bias=0.5, seed=0)
    >>> data.name
    'synthetic_two_group'
    """
    return get_dataset(name).load(**kwargs)
