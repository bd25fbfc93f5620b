"""Name -> loader registry of the data sets keras-ssr reads.

Data that ships with keras-ssr (offline) and loaders for data users put on disk
by hand (UTKFace, IMDB-WIKI-DIR, AgeDB-DIR, STS-B; see each module's layout).
"""

from datasets import (
    age_dir,
    california_housing,
    rotated_mnist,
    stsb,
    synthetic_two_group,
    table,
    utkface,
    vader_sentiment,
)

DATASETS = {
    "agedb_dir": age_dir.load_agedb_dir,
    "california_housing": california_housing.load,
    "csv": table.load,
    "imdb_wiki_dir": age_dir.load_imdb_wiki_dir,
    "rotated_mnist": rotated_mnist.load,
    "stsb": stsb.load,
    "synthetic_two_group": synthetic_two_group.load,
    "utkface": utkface.load,
    "vader_sentiment": vader_sentiment.load,
}


def dataset_names():
    """Returns the registered data set names, sorted."""
    return tuple(sorted(DATASETS))


def load_dataset(name, **kwargs):
    """Loads a registered data set by name.

    Args:
        name: one of `dataset_names()`.
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
    if name not in DATASETS:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: {', '.join(dataset_names())}."
        )
    return DATASETS[name](**kwargs)
